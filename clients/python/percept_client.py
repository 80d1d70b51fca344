"""percept_client: a Python client for the percept server (docs/protocol.md).

One file, standard library only; uses the `msgpack` package when present,
else the small built-in MessagePack codec below. Synchronous: one request
at a time per Client (use one Client per thread).

    from percept_client import Client
    with Client("127.0.0.1:7700", token=None) as c:
        c.ingest(data=open("cat.jpg", "rb").read(), uri="cat.jpg", labels=["pets"])
        for hit in c.search(text="a photo of a cat", k=5):
            print(hit["id"], hit["score"], hit["uri"])

Errors from the server raise PerceptError with .code (the perr code, e.g.
-16), .name ("AUTH") and the server's message.
"""
import socket
import struct

VERSION = 1
MAGIC = b"PCPT"
HEADER = struct.Struct("<4sBBHQI")  # magic, version, opcode, flags, id, length
F_RESPONSE, F_ERROR = 0x1, 0x2
OPS = {"HELLO": 0x01, "PING": 0x02, "INGEST": 0x10, "SEARCH": 0x11, "CLASSIFY": 0x12,
       "MODERATE": 0x13, "GET": 0x14, "DELETE": 0x15, "LABEL": 0x16, "EMBED": 0x17,
       "COLLECTIONS": 0x18, "STATS": 0x19, "SNAPSHOT": 0x1A, "EXPORT": 0x1B, "DUPS": 0x1C}


class PerceptError(Exception):
    def __init__(self, code, name, message):
        super().__init__("%s (%d): %s" % (name, code, message))
        self.code, self.name, self.message = code, name, message


# ---- MessagePack --------------------------------------------------------

def _pack(o, out):
    if o is None:
        out.append(0xC0)
    elif o is True or o is False:
        out.append(0xC3 if o else 0xC2)
    elif isinstance(o, int):
        if 0 <= o < 128:
            out.append(o)
        elif -32 <= o < 0:
            out.append(o & 0xFF)
        elif o >= 0:
            out += b"\xcf" + struct.pack(">Q", o)
        else:
            out += b"\xd3" + struct.pack(">q", o)
    elif isinstance(o, float):
        out += b"\xcb" + struct.pack(">d", o)
    elif isinstance(o, str):
        b = o.encode("utf-8")
        if len(b) < 32:
            out.append(0xA0 | len(b))
        else:
            out += b"\xdb" + struct.pack(">I", len(b))
        out += b
    elif isinstance(o, (bytes, bytearray, memoryview)):
        b = bytes(o)
        out += (b"\xc4" + bytes([len(b)]) if len(b) < 256 else b"\xc6" + struct.pack(">I", len(b))) + b
    elif isinstance(o, (list, tuple)):
        out += bytes([0x90 | len(o)]) if len(o) < 16 else b"\xdd" + struct.pack(">I", len(o))
        for e in o:
            _pack(e, out)
    elif isinstance(o, dict):
        out += bytes([0x80 | len(o)]) if len(o) < 16 else b"\xdf" + struct.pack(">I", len(o))
        for k, v in o.items():
            _pack(k, out)
            _pack(v, out)
    else:
        raise TypeError("cannot pack %r" % type(o))


class _Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        if n > len(self.b) - self.i:
            raise ValueError("MessagePack truncated")
        s = self.b[self.i:self.i + n]
        self.i += n
        return s

    def num(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def obj(self):
        t = self.take(1)[0]
        if t <= 0x7F:
            return t
        if t >= 0xE0:
            return t - 256
        if 0x80 <= t <= 0x8F:
            return self.map(t & 0x0F)
        if 0x90 <= t <= 0x9F:
            return self.arr(t & 0x0F)
        if 0xA0 <= t <= 0xBF:
            return self.take(t & 0x1F).decode("utf-8")
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if t in simple:
            return simple[t]
        if t in (0xC4, 0xC5, 0xC6):
            return bytes(self.take(self.num({0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}[t])))
        if t in (0xD9, 0xDA, 0xDB):
            return self.take(self.num({0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}[t])).decode("utf-8")
        fmts = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
                0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
        if t in fmts:
            return self.num(fmts[t])
        if t in (0xDC, 0xDD):
            return self.arr(self.num(">H" if t == 0xDC else ">I"))
        if t in (0xDE, 0xDF):
            return self.map(self.num(">H" if t == 0xDE else ">I"))
        raise ValueError("unsupported MessagePack type 0x%02x" % t)

    def arr(self, n):
        if n > len(self.b) - self.i:
            raise ValueError("MessagePack array longer than the payload")
        return [self.obj() for _ in range(n)]

    def map(self, n):
        if 2 * n > len(self.b) - self.i:
            raise ValueError("MessagePack map longer than the payload")
        return {self.obj(): self.obj() for _ in range(n)}


try:  # the msgpack package when installed
    import msgpack as _mp

    def packb(o):
        return _mp.packb(o, use_bin_type=True)

    def unpackb(b):
        return _mp.unpackb(b, raw=False, strict_map_key=False)
except ImportError:
    def packb(o):
        out = bytearray()
        _pack(o, out)
        return bytes(out)

    def unpackb(b):
        r = _Reader(memoryview(b).tobytes())
        o = r.obj()
        if r.i != len(r.b):
            raise ValueError("trailing bytes after the MessagePack object")
        return o


# ---- client -------------------------------------------------------------

def floats_to_bin(v):
    return struct.pack("<%df" % len(v), *v)


def bin_to_floats(b):
    return list(struct.unpack("<%df" % (len(b) // 4), b))


class Client:
    """A connection to a percept server ("HOST:PORT" or "unix:/path")."""

    def __init__(self, addr="127.0.0.1:7700", token=None, timeout=None):
        if addr.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(addr[5:])
        else:
            host, port = addr.rsplit(":", 1)
            self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 0
        hello = {"versions": [VERSION]}
        if token is not None:
            hello["token"] = token
        self.hello = self.call("HELLO", hello)
        self.dim = self.hello.get("dim")

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv(self, n):
        chunks, got = [], 0
        while got < n:
            b = self.sock.recv(min(n - got, 1 << 20))
            if not b:
                raise ConnectionError("connection closed by the server")
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def send(self, op, payload=None):
        """Sends one request (pipelining); returns its id."""
        self.next_id += 1
        body = packb(payload if payload is not None else {})
        self.sock.sendall(HEADER.pack(MAGIC, VERSION, OPS[op], 0, self.next_id, len(body)) + body)
        return self.next_id

    def recv(self):
        """Reads the next response: (id, opcode, payload); errors raise."""
        magic, ver, op, flags, rid, length = HEADER.unpack(self._recv(HEADER.size))
        if magic != MAGIC:
            raise ConnectionError("bad frame magic from the server")
        body = unpackb(self._recv(length)) if length else {}
        if flags & F_ERROR:
            raise PerceptError(body.get("code"), body.get("name"), body.get("message"))
        return rid, op, body

    def call(self, op, payload=None):
        rid = self.send(op, payload)
        got, _, body = self.recv()
        if got != rid:
            raise ConnectionError("response id %d, expected %d" % (got, rid))
        return body

    # -- operations (fields as in docs/protocol.md) --
    def ping(self):
        return self.call("PING")

    def ingest(self, data=None, path=None, **fields):
        req = dict(fields)
        if data is not None:
            req["data"] = bytes(data)
        if path is not None:
            req["path"] = path
        return self.call("INGEST", req)

    def search(self, text=None, image=None, vector=None, id=None, **query):
        """query: k, min_score, collections, labels, where, include_self,
        segments (True: video segment hits with start_s/end_s seconds).
        Video hits also carry duration_s, fps, codec, width, height."""
        req = dict(query)
        if text is not None:
            req["text"] = text
        if image is not None:
            req["image"] = bytes(image)
        if vector is not None:
            req["vector"] = floats_to_bin(vector)
        if id is not None:
            req["id"] = id
        return self.call("SEARCH", req)["hits"]

    def embed(self, text=None, image=None):
        req = {"text": text} if text is not None else {"image": bytes(image)}
        return bin_to_floats(self.call("EMBED", req)["vector"])

    def get(self, id, vector=False):
        item = self.call("GET", {"id": id, "vector": vector})
        if "vector" in item:
            item["vector"] = bin_to_floats(item["vector"])
        return item

    def delete(self, ids):
        return self.call("DELETE", {"ids": list(ids)})["removed"]

    def label(self, label, ids, remove=False):
        return self.call("LABEL", {"label": label, "ids": list(ids), "remove": remove})

    def classify(self, image, labels, prompt=None):
        req = {"image": bytes(image), "labels": list(labels)}
        if prompt:
            req["prompt"] = prompt
        r = self.call("CLASSIFY", req)
        return dict(zip(r["labels"], r["probs"]))

    def moderate(self, image, sets, threshold=None, k=5):
        req = {"image": bytes(image), "sets": list(sets), "k": k}
        if threshold is not None:
            req["threshold"] = threshold
        return self.call("MODERATE", req)

    def collections(self, action="list", name=None, factory=None):
        req = {"action": action}
        if name:
            req["name"] = name
        if factory:
            req["factory"] = factory
        return self.call("COLLECTIONS", req)["collections"]

    def stats(self):
        return self.call("STATS")

    def snapshot(self):
        return self.call("SNAPSHOT")

    def export(self, collection=None, vector=True, page=256):
        """Yields every item (the GET map; vector as a list of floats unless
        vector=False), collection by collection, by id, one EXPORT page
        (at most `page` items) per request."""
        req = {"limit": page, "vector": vector}
        if collection is not None:
            req["collection"] = collection
        while True:
            r = self.call("EXPORT", req)
            for item in r["items"]:
                if "vector" in item:
                    item["vector"] = bin_to_floats(item["vector"])
                yield item
            if not r.get("next"):
                return
            req["after_collection"] = r["next"]["after_collection"]
            req["after"] = r["next"]["after"]

    def dups(self, tier="near", collection=None, threshold=None):
        """Groups of duplicates: [{"ids": [...], "min_score": x}], tier
        "exact", "near" or "similar"."""
        req = {"tier": tier}
        if collection is not None:
            req["collection"] = collection
        if threshold is not None:
            req["threshold"] = threshold
        return self.call("DUPS", req)["groups"]
