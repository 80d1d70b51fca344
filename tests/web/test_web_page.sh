#!/usr/bin/env bash
# The search page in headless Chromium (Debian's /usr/bin/chromium driven by
# playwright-core from npm, installed here from the committed lock file):
# page_test.js types a query and uploads a photo; the ids it sees must be the
# binary protocol's for the same queries. Screenshots: $PERCEPT_BIN/web-test/.
set -euo pipefail
BIN=${PERCEPT_BIN:?}; EXE=${PERCEPT_EXE:?}; SRC=${PERCEPT_SRC:?}
FIX=${PERCEPT_FIXTURES:-$SRC/../shared/pe-fixtures}
[ -x /usr/bin/chromium ] || { echo "test_web_page: /usr/bin/chromium missing (scripts/deps.sh installs it)"; exit 1; }
command -v npm >/dev/null || { echo "test_web_page: npm missing (scripts/deps.sh installs it)"; exit 1; }
OUT=$BIN/web-test; mkdir -p "$OUT"
# npm packages from the lock file, once per lock file
if ! cmp -s "$SRC/tests/web/package-lock.json" "$OUT/package-lock.json" || [ ! -d "$OUT/node_modules/playwright-core" ]; then
  cp "$SRC/tests/web/package.json" "$SRC/tests/web/package-lock.json" "$OUT/"
  (cd "$OUT" && npm ci --no-audit --no-fund --loglevel=error)
fi
cp "$SRC/tests/web/page_test.js" "$OUT/"
W=$(mktemp -d); trap 'kill $SPID 2>/dev/null || true; wait $SPID 2>/dev/null || true; rm -rf "$W"' EXIT
SPID=
M=$FIX/tiny-a/tiny-a.safetensors
export PERCEPT_VOCAB=$FIX/bpe_simple_vocab_16e6.txt.gz
mkdir "$W/photos"
cp "$FIX"/tiny-a/images/*.png "$FIX"/tiny-a/images/*.jpg "$W/photos/" 2>/dev/null || true
HOSTILE='<img src=x onerror=alert(1)>"&.png'
vips flip "$FIX/tiny-a/images/astronaut.png" "$W/photos/$HOSTILE" vertical
vips flip "$FIX/tiny-a/images/camera.png" "$W/photos/camera-flipped.png" horizontal
"$EXE" ingest --db "$W/db" --model "$M" -q "$W/photos" >/dev/null
PORTS=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
set -- $PORTS; BP=$1; HP=$2
"$EXE" serve --db "$W/db" --listen 127.0.0.1:$BP --http 127.0.0.1:$HP >"$W/serve.log" 2>&1 &
SPID=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
TEXT="a photo of an astronaut"
PHOTO="$FIX/tiny-a/images/camera.png"
ids() { python3 -c 'import json,sys; print(json.dumps([h["id"] for h in json.load(sys.stdin)["results"]]))'; }
T_IDS=$("$EXE" search --server 127.0.0.1:$BP --text "$TEXT" -k 24 --json | ids)
I_IDS=$("$EXE" search --server 127.0.0.1:$BP --image "$PHOTO" -k 24 --json | ids)
python3 -c 'import json,sys; json.dump({"text": sys.argv[1], "text_ids": json.loads(sys.argv[2]), "image_ids": json.loads(sys.argv[3]), "hostile": sys.argv[4]}, open(sys.argv[5], "w"))' \
  "$TEXT" "$T_IDS" "$I_IDS" "$W/photos/$HOSTILE" "$W/expect.json"
cd "$OUT" && node page_test.js "http://127.0.0.1:$HP" "$W/expect.json" "$PHOTO" "$OUT"
