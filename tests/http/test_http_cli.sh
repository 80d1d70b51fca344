#!/usr/bin/env bash
# `percept serve --http`: the HTTP door of a real server process answers
# what `percept search --db` and `percept search --server` (binary protocol)
# print for the same queries (text, uploaded image vs --image, id,
# min_score: ids and uris in order, scores to 1e-6), GET and STATS answer for
# the served database; SIGTERM stops both doors and saves; a non-loopback
# --http without a token is refused. Under build-asan the server runs with
# ASan/LSan, its loop on the main thread (no suppressions).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../common/serve_lib.sh"
"$PERCEPT_EXE" ingest --db "$TMP/db" "$FIX/tiny-a/images" > /dev/null
PORT="$(free_port)"; HPORT="$(free_port)"
"$PERCEPT_EXE" serve --db "$TMP/db" --listen "127.0.0.1:$PORT" --http "127.0.0.1:$HPORT" 2> "$TMP/serve.log" &
PID=$!
# h.py METHOD PATH [BODY_FILE|- [CONTENT_TYPE]]: prints the status, then the body
cat > "$TMP/h.py" <<'PY'
import sys, urllib.request, urllib.error
port, method, path = sys.argv[1:4]
body = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 and sys.argv[4] != "-" else None
req = urllib.request.Request("http://127.0.0.1:%s%s" % (port, path), data=body, method=method)
if len(sys.argv) > 5: req.add_header("Content-Type", sys.argv[5])
try:
    with urllib.request.urlopen(req, timeout=60) as r: st, out = r.status, r.read()
except urllib.error.HTTPError as e: st, out = e.code, e.read()
except OSError: st, out = 0, b""
print(st); sys.stdout.flush(); sys.stdout.buffer.write(out)
PY
http() { python3 "$TMP/h.py" "$HPORT" "$@"; }
for _ in $(seq 300); do [ "$(http GET /readyz | head -1)" == 200 ] && break; sleep 0.1; done
[ "$(http GET /readyz | head -1)" == 200 ] || { echo "server not ready"; cat "$TMP/serve.log"; exit 1; }
fail=0; pass=0
# name, http method, path, body file or -, content type or -, then the CLI search arguments
check() {
  local name="$1" method="$2" path="$3" body="$4" ctype="$5"; shift 5
  "$PERCEPT_EXE" search --db "$TMP/db" --json "$@" > "$TMP/a.json" 2>&1 || true
  "$PERCEPT_EXE" search --server "127.0.0.1:$PORT" --json "$@" > "$TMP/b.json" 2>&1 || true
  if [ "$ctype" == - ]; then http "$method" "$path" "$body" > "$TMP/c.out"; else http "$method" "$path" "$body" "$ctype" > "$TMP/c.out"; fi
  if python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
st, _, body = open(tmp + "/c.out", "rb").read().partition(b"\n")
if st != b"200": print("HTTP", st, body[:300]); sys.exit(1)
a = json.load(open(tmp + "/a.json"))["results"]; b = json.load(open(tmp + "/b.json"))["results"]; c = json.loads(body)["hits"]
rows = lambda v: [(x["id"], x["uri"]) for x in v]
if not a or rows(a) != rows(b) or rows(a) != rows(c): print("hits differ", rows(a), rows(b), rows(c)); sys.exit(1)
for x, y in zip(a, c):
    if abs(x["score"] - y["score"]) > 1e-6: print("score", x, y); sys.exit(1)
PY
  then pass=$((pass+1)); else fail=$((fail+1)); echo "DIFFERENT: $name"; fi
}
printf '{"text": "a photo of a cat", "k": 4}' > "$TMP/q1.json"
check "text" POST /search "$TMP/q1.json" application/json --text "a photo of a cat" -k 4
check "image upload" POST "/search?k=3" "$FIX/tiny-a/images/chelsea.png" image/png --image "$FIX/tiny-a/images/chelsea.png" -k 3
ID="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["id"])' "$TMP/a.json")"
check "id" GET "/items/$ID/similar?k=5" - - --id "$ID" -k 5
printf '{"text": "a photo of a cat"}' > "$TMP/q2.json"
check "min_score" POST "/search?k=0&min_score=-1" "$TMP/q2.json" application/json --text "a photo of a cat" -k 0 --min-score -1
"$PERCEPT_EXE" get --db "$TMP/db" --json "$ID" > "$TMP/get.json" 2>&1 || true
http GET "/items/$ID" > "$TMP/get.out"
http GET /stats > "$TMP/stats.out"
if python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
st, _, body = open(tmp + "/get.out", "rb").read().partition(b"\n")
item, cli = json.loads(body), json.load(open(tmp + "/get.json"))
if st != b"200" or any(item[k] != cli[k] for k in ("id", "uri", "collection", "sha256", "labels")):
    print("GET", st, body[:300], cli); sys.exit(1)
st, _, body = open(tmp + "/stats.out", "rb").read().partition(b"\n")
if st != b"200" or json.loads(body)["db"]["n_items"] != 6: print("STATS", st, body[:300]); sys.exit(1)
PY
then pass=$((pass+1)); else fail=$((fail+1)); echo "GET/STATS wrong"; fi
# SIGTERM: both doors stop, exit 0, indexes saved
kill -TERM "$PID"
if wait "$PID"; then pass=$((pass+1)); else fail=$((fail+1)); echo "serve exited non-zero"; cat "$TMP/serve.log"; fi
PID=""
if grep -q "stopped; indexes saved" "$TMP/serve.log"; then pass=$((pass+1)); else fail=$((fail+1)); echo "no clean stop:"; cat "$TMP/serve.log"; fi
# non-loopback HTTP without a token: refused before serving
if "$PERCEPT_EXE" serve --db "$TMP/db" --listen "127.0.0.1:$(free_port)" --http "0.0.0.0:$(free_port)" 2> "$TMP/err.log"; then
  fail=$((fail+1)); echo "non-loopback --http without a token was accepted"
elif grep -q "without a token" "$TMP/err.log"; then pass=$((pass+1)); else fail=$((fail+1)); cat "$TMP/err.log"; fi
echo "$pass passed, $fail failed"
[ "$fail" == 0 ]
