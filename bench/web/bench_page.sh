#!/usr/bin/env bash
# Page load of / and a 50-result grid (bench_page.js) on a database of the
# Debian wallpapers and the fixture photos (tiny-a model), served by
# `percept serve --http` from this build. Needs chromium and npm
# (scripts/deps.sh); playwright-core comes from tests/web's lock file.
#   bench/web/bench_page.sh [BUILD_DIR] [RUNS]
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd); BIN=$(cd "${1:-$SRC/build}" && pwd); N=${2:-9}
FIX=${PERCEPT_FIXTURES:-$SRC/../shared/pe-fixtures}; EXE=$BIN/percept
OUT=$BIN/web-test; mkdir -p "$OUT"
if ! cmp -s "$SRC/tests/web/package-lock.json" "$OUT/package-lock.json" || [ ! -d "$OUT/node_modules/playwright-core" ]; then
  cp "$SRC/tests/web/package.json" "$SRC/tests/web/package-lock.json" "$OUT/"
  (cd "$OUT" && npm ci --no-audit --no-fund --loglevel=error)
fi
cp "$SRC/bench/web/bench_page.js" "$OUT/"
W=$(mktemp -d); SPID=; trap 'kill $SPID 2>/dev/null || true; wait $SPID 2>/dev/null || true; rm -rf "$W"' EXIT
export PERCEPT_VOCAB=$FIX/bpe_simple_vocab_16e6.txt.gz
mkdir "$W/flip"; for f in "$FIX"/tiny-a/images/*.png "$FIX"/tiny-a/images/*.jpg; do vips flip "$f" "$W/flip/$(basename "$f")" horizontal; done
{ find /usr/share/backgrounds -type f \( -name '*.jpg' -o -name '*.png' \); ls "$FIX"/tiny-a/images/*.png "$FIX"/tiny-a/images/*.jpg "$W"/flip/*; } \
  | "$EXE" ingest --db "$W/db" --model "$FIX/tiny-a/tiny-a.safetensors" -q - >/dev/null 2>&1 || true
P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$EXE" serve --db "$W/db" --listen 127.0.0.1:0 --http 127.0.0.1:$P >"$W/serve.log" 2>&1 & SPID=$!
for i in $(seq 100); do curl -sf "http://127.0.0.1:$P/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
NI=$(curl -s "http://127.0.0.1:$P/collections" | python3 -c 'import json,sys; print(sum(c["n_items"] for c in json.load(sys.stdin)["collections"]))')
K=50; [ "$NI" -lt 50 ] && K=$NI
echo "# bench_page: commit $(git -C "$SRC" describe --always --dirty), $NI items, $N runs, chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')"
echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(grep -qw avx2 /proc/cpuinfo && echo avx2)$(grep -qw avx512f /proc/cpuinfo && echo ' avx512f')), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
cd "$OUT" && node bench_page.js "http://127.0.0.1:$P" "a photo of a landscape" "$K" "$N"
