#!/usr/bin/env python3
"""A loopback HTTP server for the `percept model fetch` tests: serves files
from a directory, honours single-range requests (bytes=N-), logs every
request line and Range header to a file, and can cut a response short after
--cut-after bytes (once) to simulate a dropped connection.
Prints the port it listens on to stdout, then serves until killed."""
import argparse, http.server, os, socketserver, sys

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("log")
ap.add_argument("--cut-after", type=int, default=0)
args = ap.parse_args()
state = {"cut": args.cut_after}

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        rng = self.headers.get("Range", "")
        with open(args.log, "a") as lf:
            lf.write(f"{self.path} range={rng}\n")
        # Map /facebook/<name>/resolve/main/<file> and /<file> to root/<file>.
        path = os.path.join(args.root, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        if rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data)-1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state["cut"] and len(body) > state["cut"]:
            self.wfile.write(body[: state["cut"]])
            self.wfile.flush()
            state["cut"] = 0
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

srv = S(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
