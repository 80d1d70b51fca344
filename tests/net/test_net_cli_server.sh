#!/usr/bin/env bash
# `percept search|get|stats --server HOST:PORT` print exactly what they print
# with --db DIR (text, image, id, vector; plain and --json), against a
# live `percept serve` of that database on a free loopback port.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../common/serve_lib.sh"
"$PERCEPT_EXE" ingest --db "$TMP/db" "$FIX/tiny-a/images" > /dev/null
cp -r "$TMP/db" "$TMP/db2"   # the same database for the --db side of mutations
PORT="$(free_port)"
"$PERCEPT_EXE" serve --db "$TMP/db" --listen "127.0.0.1:$PORT" 2> "$TMP/serve.log" &
PID=$!
wait_server "$PORT"
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
# embed: the server's EMBED prints what the same model prints in-process
# (images uploaded), and what cannot go over the protocol is refused.
EMB=(--image "$FIX/tiny-a/images/chelsea.png" --text "a photo of a cat" --image "$FIX/tiny-a/images/rocket.jpg")
a="$("$PERCEPT_EXE" embed "${EMB[@]}" 2>&1)" || true
b="$("$PERCEPT_EXE" embed --server "127.0.0.1:$PORT" "${EMB[@]}" 2>&1)" || true
if [ "$a" == "$b" ] && [ "$(echo "$a" | grep -c '"dim": ')" == 3 ]; then pass=$((pass+1)); else
  fail=$((fail+1)); echo "DIFFERENT for embed"; diff <(echo "$a") <(echo "$b") | head -5; fi
for bad in "--video $FIX/tiny-a/images/rocket.jpg" "--no-normalize --text x" "--image $TMP/missing.jpg"; do
  if "$PERCEPT_EXE" embed --server "127.0.0.1:$PORT" $bad > "$TMP/out" 2> "$TMP/err"; then
    fail=$((fail+1)); echo "embed --server $bad: exit 0"
  elif [ -s "$TMP/out" ] || ! grep -q "percept embed: " "$TMP/err"; then
    fail=$((fail+1)); echo "embed --server $bad: $(cat "$TMP/out" "$TMP/err")"
  else pass=$((pass+1)); fi
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
# Collections, moderation, classification: same output and exit status.
IMG="$FIX/tiny-a/images"
printf 'not an image' > "$TMP/bad.png"
mutate collection create banned --index Flat
mutate collection create banned            # exists: the same error
mutate collection create other
mutate collection list
mutate collection list --json
mutate collection drop other
mutate collection drop nosuch              # unknown: the same error
mutate collection list --json
B="$("$PERCEPT_EXE" search --db "$TMP/db" --text "cat" -k 2 --json | python3 -c 'import json,sys; print(" ".join(str(h["id"]) for h in json.load(sys.stdin)["results"]))')"
mutate label add banned $B
mutate moderate --set default:banned --set-threshold 0.9
mutate moderate --set default:banned "$IMG/chelsea.png" "$IMG/rocket.jpg"
mutate moderate --set default:banned --json "$IMG/chelsea.png" "$IMG/coffee.png"
mutate moderate --set default:banned --threshold -1 -k 2 "$IMG/camera.png"          # exit 1
mutate moderate --set default:banned --threshold 1 --json "$IMG/camera.png"         # exit 0
mutate moderate --set default:banned --set default "$IMG/astronaut.png"
mutate moderate --set default:nolabel "$IMG/chelsea.png"                            # no threshold: exit 2
mutate moderate --set nosuch --threshold 0.5 "$IMG/chelsea.png"                     # unknown set
mutate moderate --set default:banned "$TMP/missing.png" "$IMG/chelsea.png"         # exit 2, one error
mutate moderate --set default:banned --json "$TMP/bad.png"                          # undecodable
mutate collection list --json                                                       # thresholds
mutate classify --labels "cat, rocket,coffee, astronaut" "$IMG/chelsea.png" "$IMG/rocket.jpg"
mutate classify --labels "cat,dog" --prompt "a picture of a {label}" --top 1 "$IMG/coffee.png"
# (labels not classified before: the engine caches prompt vectors per handle,
# encoded in batches of 8, and a cached prompt from another batch differs
# from a fresh one in the last float bits, so the server's answer would
# depend on its earlier requests)
mutate classify --labels "kitten,puppy,cup" --json "$IMG/coffee.png" "$TMP/missing.png" "$TMP/bad.png"
mutate classify --labels "cat,dog" "$TMP/bad.png"
# Ingest: a fresh collection on both sides (directory walk, '-' from stdin,
# labels and meta, failures); the summary without its timing, then the
# same items (--jobs 1 --batch 1: embedded ids in walk order and images
# encoded one at a time, as the server does; a batch-8 encode differs in
# the last float bits).
strip() { sed -E 's/\([0-9]+ files in [0-9.]+ s, [0-9.]+ files\/s\)/(N files)/; s/"elapsed_s":[0-9.e+-]+,"files_per_s":[0-9.e+-]+,//'; }
ingest_cmp() {
  local a b
  a="$(cd "$TMP" && "$PERCEPT_EXE" ingest --db "$TMP/db2" --jobs 1 --batch 1 "$@" 2>&1 < "$TMP/list"; echo "exit $?")" || true
  b="$(cd "$TMP" && "$PERCEPT_EXE" ingest --server "127.0.0.1:$PORT" "$@" 2>&1 < "$TMP/list"; echo "exit $?")" || true
  a="$(echo "${a//$TMP\/db2/$TMP/db}" | strip)"; b="$(echo "$b" | strip)"
  if [ "$a" == "$b" ]; then pass=$((pass+1)); else
    fail=$((fail+1)); echo "DIFFERENT for ingest $*"; diff <(echo "$a") <(echo "$b") | head -10; fi
}
mkdir -p "$TMP/in/sub"
cp "$IMG/chelsea.png" "$IMG/coffee.png" "$TMP/in/"; cp "$IMG/rocket.jpg" "$TMP/bad.png" "$TMP/in/sub/"
printf '%s\n' "$IMG/camera.png" "" "$TMP/missing.png" > "$TMP/list"
ingest_cmp --collection up --label fresh --meta src=test "$TMP/in"
ingest_cmp --collection up --json "$TMP/in" -                       # present, failures, stdin
ingest_cmp --collection up2 --set-threshold 0.8 --quiet "$IMG/astronaut.png"
ingest_cmp --collection up "$TMP/missing-dir/"
for fmt in "" "--json"; do
  mutate search --collection up --text "a photo" -k 10 $fmt
  mutate search --collection up --label fresh --where src=test --text x -k 10 $fmt
done
mutate collection list --json
# Export (paged over EXPORT: 300 vector items > one 256-item page) and dups.
# (created_ms is each side's own ingest time: not compared)
export_cmp() {
  local a b
  a="$("$PERCEPT_EXE" export --db "$TMP/db2" "$@" 2>&1; echo "exit $?")" || true
  b="$("$PERCEPT_EXE" export --server "127.0.0.1:$PORT" "$@" 2>&1; echo "exit $?")" || true
  a="$(echo "${a//$TMP\/db2/$TMP/db}" | sed -E 's/"created_ms":[0-9]+,//')"; b="$(echo "$b" | sed -E 's/"created_ms":[0-9]+,//')"
  if [ "$a" == "$b" ] && [ "$(echo "$a" | wc -l)" -gt 1 ]; then pass=$((pass+1)); else
    fail=$((fail+1)); echo "DIFFERENT for export $*"; diff <(echo "$a") <(echo "$b") | head -10 | cut -c1-300; fi
}
export_cmp
export_cmp --collection up
mutate export --collection nosuch
mutate dups
mutate dups --tier exact --json
mutate dups --tier similar --threshold 0.5 --collection up
mutate dups --tier similar --threshold 0.2 --json
mutate dups --collection nosuch
mutate dups --tier bogus
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
