#!/usr/bin/env bash
# `percept search|get|stats --server HOST:PORT` print exactly what they print
# with --db DIR (text, image, id, vector; plain and --json), against a
# live `percept serve` of that database on a free loopback port.
set -euo pipefail
FIX="${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}"
export PERCEPT_MODEL="$FIX/tiny-a/tiny-a.safetensors"
export PERCEPT_VOCAB="$FIX/bpe_simple_vocab_16e6.txt.gz"
TMP="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
"$PERCEPT_EXE" ingest --db "$TMP/db" "$FIX/tiny-a/images" > /dev/null
cp -r "$TMP/db" "$TMP/db2"   # the same database for the --db side of mutations
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$PERCEPT_EXE" serve --db "$TMP/db" --listen "127.0.0.1:$PORT" 2> "$TMP/serve.log" &
PID=$!
for _ in $(seq 100); do "$PERCEPT_EXE" search --server "127.0.0.1:$PORT" --text x > /dev/null 2>&1 && break; sleep 0.1; done
fail=0; pass=0
compare() {
  local cmd=search a b
  case "$1" in get|stats) cmd="$1"; shift;; esac
  a="$("$PERCEPT_EXE" $cmd --db "$TMP/db" "$@" 2>&1)" || true
  b="$("$PERCEPT_EXE" $cmd --server "127.0.0.1:$PORT" "$@" 2>&1)" || true
  if [ "$a" == "$b" ] && [ -n "$a" ]; then pass=$((pass+1)); else
    fail=$((fail+1)); echo "DIFFERENT for search $*"; diff <(echo "$a") <(echo "$b") | head -10; fi
}
ID="$("$PERCEPT_EXE" search --db "$TMP/db" --text "a cup of coffee" -k 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["id"])')"
"$PERCEPT_EXE" get --db "$TMP/db" --vector "$ID" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["vector"]))' > "$TMP/vec.json"
for fmt in "" "--json"; do
  compare --text "a photo of a cat" -k 4 $fmt
  compare --text "rocket" --min-score -1 -k 0 $fmt
  compare --image "$FIX/tiny-a/images/chelsea.png" -k 3 $fmt
  compare --id "$ID" -k 5 $fmt
  compare --id "$ID" -k 2 --include-self $fmt
  compare --vector "$TMP/vec.json" -k 6 $fmt
  compare --id 999999 $fmt                  # the same error
  compare stats $fmt
done
compare get "$ID"
compare get --vector "$ID"
compare get 999999
# Mutations: --db on the copy, --server on the served database; same
# output, then the same items.
mutate() {
  local a b
  a="$("$PERCEPT_EXE" "$1" --db "$TMP/db2" "${@:2}" 2>&1; echo "exit $?")" || true
  a="${a//$TMP\/db2/$TMP/db}"   # messages name the database directory
  b="$("$PERCEPT_EXE" "$1" --server "127.0.0.1:$PORT" "${@:2}" 2>&1; echo "exit $?")" || true
  if [ "$a" == "$b" ]; then pass=$((pass+1)); else
    fail=$((fail+1)); echo "DIFFERENT for $*"; diff <(echo "$a") <(echo "$b") | head -10; fi
}
IDS="$("$PERCEPT_EXE" search --db "$TMP/db" --text "x" -k 3 --json | python3 -c 'import json,sys; print(" ".join(str(h["id"]) for h in json.load(sys.stdin)["results"]))')"
mutate label add flagged $IDS
mutate label rm flagged ${IDS%% *}
mutate label add flagged 999999            # unknown id: the same error
for i in $IDS; do
  a="$("$PERCEPT_EXE" get --db "$TMP/db2" "$i" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["labels"])')"
  b="$("$PERCEPT_EXE" get --server "127.0.0.1:$PORT" "$i" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["labels"])')"
  if [ "$a" == "$b" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "labels differ for $i: $a / $b"; fi
done
mutate rm ${IDS%% *}
mutate rm --json ${IDS##* }
# Unknown id: the same error and exit status; embedded also prints
# "removed 0", the server's error answer carries no count (not compared).
a="$("$PERCEPT_EXE" rm --db "$TMP/db2" 999999 2>&1 | grep -v '^removed'; echo "exit ${PIPESTATUS[0]}")" || true
b="$("$PERCEPT_EXE" rm --server "127.0.0.1:$PORT" 999999 2>&1; echo "exit $?")" || true
a="${a//$TMP\/db2/$TMP/db}"
if [ "$a" == "$b" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "rm 999999 differs: $a / $b"; fi
compare stats --json
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
