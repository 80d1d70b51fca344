#!/usr/bin/env bash
# scripts/first-run.sh (what `make run` does after building) with the tiny
# test model, offline-style: a temporary PERCEPT_HOME, a small photo set, a
# free loopback port. First run: ingests every photo, starts the server,
# prints a table per query (the image query finds the photo itself at 1.0),
# writes result pages, warns that the tiny model's results are random.
# Second run: everything "already present", the same server reused. Then the
# server it started is stopped (SIGTERM) and must exit cleanly.
set -euo pipefail
FIX="$(realpath "${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}")"
TMP="$(mktemp -d)"
export PERCEPT_HOME="$TMP/home"
PIDFILE="$PERCEPT_HOME/first-run/serve.pid"
cleanup() {
  if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
BUILD="$(dirname "$PERCEPT_EXE")"
export PERCEPT_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export PERCEPT_PHOTOS="$TMP/photos"
export PERCEPT_QUERIES=$'a photo of a cat\na rocket'
unset PERCEPT_VOCAB PERCEPT_MODEL || true
mkdir "$TMP/photos"
cp "$FIX"/tiny-a/images/*.png "$FIX"/tiny-a/images/*.jpg "$TMP/photos/"
NPH=$(ls "$TMP/photos" | wc -l)
# The fixtures' model sits in tiny-a/, its vocabulary one level up: the script
# must find it there (no PERCEPT_VOCAB given).
MODEL="$FIX/tiny-a/tiny-a.safetensors"
rc=0
fail() { echo "FAIL: $*"; rc=1; }

"$PERCEPT_SRC/scripts/first-run.sh" "$BUILD" "$MODEL" > "$TMP/run1.out" 2>&1 || { cat "$TMP/run1.out"; fail "first run exited $?"; exit 1; }
cat "$TMP/run1.out"
[ -s "$PIDFILE" ] || fail "no pid file"
PID="$(cat "$PIDFILE")"
kill -0 "$PID" 2>/dev/null || fail "server not running after the first run"
grep -q "tiny TEST model with random weights" "$TMP/run1.out" || fail "no random-results note"
grep -q "vocabulary: $FIX/bpe_simple_vocab_16e6.txt.gz" "$TMP/run1.out" || fail "vocabulary not found one level up"
grep -q "photos: $NPH files" "$TMP/run1.out" || fail "photo count"
# Tables: a header and 5 rows per query (6 photos), 2 text + 2 image queries.
[ "$(grep -c '^    rank    score      id  path$' "$TMP/run1.out")" = 4 ] || fail "expected 4 result tables"
[ "$(grep -cE '^ +[1-5]  +-?[01]\.[0-9]{4}  +[0-9]+  /' "$TMP/run1.out")" = 20 ] || fail "expected 20 table rows"
# The image query by chelsea.png: itself first at 1.0000.
grep -A2 "image query: .*/chelsea.png" "$TMP/run1.out" | grep -qE '^ +1  +1\.0000  +[0-9]+  .*/chelsea\.png$' \
  || fail "image query did not find the photo itself first"
# The server answers and holds every photo.
ITEMS="$("$PERCEPT_EXE" stats --server "127.0.0.1:$PERCEPT_PORT" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])')"
[ "$ITEMS" = "$NPH" ] || fail "server has $ITEMS items, expected $NPH"
for i in 1 2 3 4; do
  grep -q 'class="hit"' "$PERCEPT_HOME/first-run/results/q$i.html" || fail "result page q$i.html has no hits"
done
grep -q "kill $PID" "$TMP/run1.out" || fail "does not say how to stop the server"

# Second run: same database, same server.
"$PERCEPT_SRC/scripts/first-run.sh" "$BUILD" "$MODEL" > "$TMP/run2.out" 2>&1 || { cat "$TMP/run2.out"; fail "second run exited $?"; exit 1; }
cat "$TMP/run2.out"
[ "$(cat "$PIDFILE")" = "$PID" ] || fail "second run started another server"
grep -q "ingest through the running server" "$TMP/run2.out" || fail "second run did not reuse the server"
grep -q "0 added, $NPH already present, 0 failed" "$TMP/run2.out" || fail "second run: not all already present"
[ "$(grep -cE '^ +[1-5]  +-?[01]\.[0-9]{4}  +[0-9]+  /' "$TMP/run2.out")" = 20 ] || fail "second run: expected 20 table rows"

# Stop the server the script started: graceful exit 0.
kill "$PID"
for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "server still running 30 s after SIGTERM"
grep -q "ERROR\|AddressSanitizer" "$PERCEPT_HOME/first-run/serve.log" && fail "server log: $(cat "$PERCEPT_HOME/first-run/serve.log")"
rm -f "$PIDFILE"

# Another database's server on the port: refused, with the way out.
"$PERCEPT_EXE" serve --db "$TMP/otherdb" --model "$MODEL" --vocab "$FIX/bpe_simple_vocab_16e6.txt.gz" \
  --listen "127.0.0.1:$PERCEPT_PORT" > "$TMP/other.log" 2>&1 &
OTHER=$!
for _ in $(seq 1 300); do "$PERCEPT_EXE" stats --server "127.0.0.1:$PERCEPT_PORT" > /dev/null 2>&1 && break; sleep 0.1; done
set +e
"$PERCEPT_SRC/scripts/first-run.sh" "$BUILD" "$MODEL" > "$TMP/runx.out" 2>&1; st=$?
set -e
[ "$st" = 1 ] && grep -q "serves another database" "$TMP/runx.out" && grep -q "PERCEPT_PORT=" "$TMP/runx.out" \
  || { cat "$TMP/runx.out"; fail "a foreign server on the port was not refused"; }
kill "$OTHER"; wait "$OTHER" || fail "foreign server exit status $?"

# A third run after the stop: restarts the server on the existing database.
"$PERCEPT_SRC/scripts/first-run.sh" "$BUILD" "$MODEL" > "$TMP/run3.out" 2>&1 || { cat "$TMP/run3.out"; fail "third run exited $?"; exit 1; }
grep -q "already present" "$TMP/run3.out" || fail "third run: ingest did not report already present"
grep -q "starting percept serve" "$TMP/run3.out" || fail "third run did not start the server"
exit $rc
