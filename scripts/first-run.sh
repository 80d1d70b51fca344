#!/usr/bin/env bash
# first-run.sh BUILD_DIR [MODEL]: what `make run` does after building.
#
#   1. model: MODEL (any local .pt/.safetensors) or the default model,
#      PE-Core-T16-384, fetched with `percept model fetch` (resumes, checks
#      SHA-256). Offline: says what is missing and how to go on, exits 1.
#   2. photos: real photos from Debian packages, gathered now (never
#      committed): /usr/share/backgrounds (gnome-backgrounds,
#      mate-backgrounds, ukui-wallpapers) and python3-skimage's data photos
#      when installed. PERCEPT_PHOTOS="dir1:dir2" replaces that list.
#   3. ingest into $PERCEPT_HOME/first-run/db-<model> (one database per
#      model file; a second run finds everything "already present").
#   4. `percept serve` on 127.0.0.1:$PERCEPT_PORT (default 7700), left
#      running; a server this script started earlier is reused.
#   5. text and image queries through the server; a table per query and a
#      result page with thumbnails (percept search --html).
#
# Vocabulary: fetched with the default model; for MODEL, PERCEPT_VOCAB, else
# bpe_simple_vocab_16e6.txt.gz next to the model file, else one directory up
# (the layout of the test fixtures: pe-fixtures/tiny-a/tiny-a.safetensors and
# pe-fixtures/bpe_simple_vocab_16e6.txt.gz), else $PERCEPT_HOME/models.
#
# Environment: PERCEPT_HOME, PERCEPT_PORT, PERCEPT_PHOTOS, PERCEPT_MAX_PHOTOS
# (default 500), PERCEPT_QUERIES (text queries, one per line),
# PERCEPT_HUB_URL / PERCEPT_VOCAB_URL (download mirrors).
set -euo pipefail

BUILD="${1:-build}"
MODEL="${2:-}"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PERCEPT="$(cd "$BUILD" 2>/dev/null && pwd)/percept" || true
VOCAB_NAME=bpe_simple_vocab_16e6.txt.gz
DEFAULT_MODEL=PE-Core-T16-384

if [ -t 1 ]; then B=$'\e[1m'; D=$'\e[2m'; R=$'\e[31m'; Y=$'\e[33m'; N=$'\e[0m'; else B= D= R= Y= N=; fi
say()  { printf '%s==>%s %s\n' "$B" "$N" "$*"; }
note() { printf '    %s\n' "$*"; }
die()  { printf '%sfirst-run: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

[ -x "$PERCEPT" ] || die "no percept binary in '$BUILD' (run \`make build\` first)"
export PERCEPT_HOME="${PERCEPT_HOME:-${HOME:-/root}/.local/share/percept}"
PORT="${PERCEPT_PORT:-7700}"
ADDR="127.0.0.1:$PORT"
STATE="$PERCEPT_HOME/first-run"
mkdir -p "$STATE"

# ---- 1. model and vocabulary ------------------------------------------------
TINY=0
if [ -n "$MODEL" ]; then
  say "model: $MODEL"
  [ -f "$MODEL" ] || die "MODEL=$MODEL: no such file"
  MODEL="$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")"
  if ! INFO="$("$PERCEPT" model info "$MODEL" 2>&1)"; then
    printf '%s\n' "$INFO" >&2
    die "MODEL=$MODEL cannot be used (above). A .pt with a non-official shape needs its configuration as <model>.json next to it; the tiny test model also comes as .safetensors, which carries it."
  fi
  case "$MODEL" in */pe-fixtures/*|*/tiny-?.*) TINY=1 ;; esac
  case "$INFO" in *'"name":"custom"'*) ;; *) TINY=0 ;; esac
  if [ -z "${PERCEPT_VOCAB:-}" ]; then
    MDIR="$(dirname "$MODEL")"
    for v in "$MDIR/$VOCAB_NAME" "$(dirname "$MDIR")/$VOCAB_NAME" "$PERCEPT_HOME/models/$VOCAB_NAME"; do
      if [ -f "$v" ]; then export PERCEPT_VOCAB="$v"; break; fi
    done
  fi
  if [ -z "${PERCEPT_VOCAB:-}" ]; then
    die "no text vocabulary ($VOCAB_NAME) next to $MODEL, one directory up, or in $PERCEPT_HOME/models.
    Get it with \`$PERCEPT model fetch\` (downloads it with the default model), or point
    PERCEPT_VOCAB at a copy: PERCEPT_VOCAB=/path/$VOCAB_NAME make run MODEL=$MODEL"
  fi
  [ -f "$PERCEPT_VOCAB" ] || die "PERCEPT_VOCAB=$PERCEPT_VOCAB: no such file"
  note "vocabulary: $PERCEPT_VOCAB"
else
  say "model: $DEFAULT_MODEL (percept model fetch; downloads once into $PERCEPT_HOME/models)"
  if ! MODEL="$("$PERCEPT" model fetch "$DEFAULT_MODEL")"; then
    MDIR="$PERCEPT_HOME/models"
    TINY_HINT="${PERCEPT_FIXTURES:-$SRC/../shared/pe-fixtures}/tiny-a/tiny-a.safetensors"
    if [ -f "$TINY_HINT" ]; then TINY_HINT="$(realpath "$TINY_HINT")"
    else TINY_HINT="<test fixtures>/tiny-a/tiny-a.safetensors   (PERCEPT_FIXTURES; not found here)"; fi
    MISSING=
    [ -f "$MDIR/$VOCAB_NAME" ] || MISSING="  $MDIR/$VOCAB_NAME   (the text vocabulary, from ${PERCEPT_VOCAB_URL:-the CLIP repository})"$'\n'
    [ -f "$MDIR/$DEFAULT_MODEL.pt" ] && [ -f "$MDIR/$VOCAB_NAME" ] \
      && MISSING="  nothing: both files are there but failed their check (message above); delete the damaged one"$'\n'
    [ -f "$MDIR/$DEFAULT_MODEL.pt" ] \
      || MISSING+="  $MDIR/$DEFAULT_MODEL.pt   (the model, from ${PERCEPT_HUB_URL:-https://huggingface.co}/facebook/$DEFAULT_MODEL)"
    cat >&2 <<EOF

${R}first-run: the default model is not here and could not be downloaded.${N}
Missing:
$MISSING
How to go on:
  * with network access: run \`make run\` again (an interrupted download resumes);
    behind a mirror: PERCEPT_HUB_URL=https://your-mirror make run
  * copy $DEFAULT_MODEL.pt (and $VOCAB_NAME) from another machine into
    $MDIR/  then \`make run\` (the copy is checked and registered)
  * any PE-Core checkpoint you have: make run MODEL=/path/to/model.pt
    (vocabulary next to it or PERCEPT_VOCAB=/path/to/$VOCAB_NAME)
  * everything offline with the tiny test model (random weights: the pipeline
    works, the rankings are meaningless):
      make run MODEL=$TINY_HINT
EOF
    exit 1
  fi
fi
STEM="$(basename "$MODEL")"; STEM="${STEM%.*}"
DB="$STATE/db-$STEM"
if [ "$TINY" = 1 ]; then
  printf '%s' "$Y"
  note "NOTE: $(basename "$MODEL") is the tiny TEST model with random weights. Everything runs for"
  note "real (decode, encode, index, serve), but scores and rankings are random: an image finds"
  note "itself at 1.0, text queries return arbitrary photos. For meaningful results: make run"
  printf '%s' "$N"
fi

# ---- 2. photos -------------------------------------------------------------
LIST="$STATE/photos.txt"
if [ -n "${PERCEPT_PHOTOS:-}" ]; then IFS=: read -r -a DIRS <<< "$PERCEPT_PHOTOS"
else DIRS=(/usr/share/backgrounds /usr/lib/python3/dist-packages/skimage/data); fi
EXISTING=()
for d in "${DIRS[@]}"; do [ -d "$d" ] && EXISTING+=("$d"); done
: > "$LIST"
if [ ${#EXISTING[@]} -gt 0 ]; then
  find -L "${EXISTING[@]}" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' -o -iname '*.webp' \) \
    -size +8k 2>/dev/null | LC_ALL=C sort -u | head -n "${PERCEPT_MAX_PHOTOS:-500}" > "$LIST"
fi
NPHOTOS=$(wc -l < "$LIST")
if [ "$NPHOTOS" -eq 0 ]; then
  die "no photos found in: ${DIRS[*]}
    Install the wallpaper packages (scripts/deps.sh does: gnome-backgrounds mate-backgrounds
    ukui-wallpapers; python3-skimage adds more), or PERCEPT_PHOTOS=/your/photos make run"
fi
say "photos: $NPHOTOS files from ${EXISTING[*]}"

# ---- 3+4. ingest, server ----------------------------------------------------
PIDFILE="$STATE/serve.pid"
server_up() { "$PERCEPT" stats --server "$ADDR" --json >/dev/null 2>&1; }
# What identifies a database from outside: model fingerprint, items per collection.
signature() { python3 -c 'import json,sys; s=json.load(sys.stdin)
print(s["model"]["fingerprint"], s["items"], sorted((c["name"], c["items"]) for c in s["collections"]))' 2>/dev/null; }
OURS=0
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && [ "$(cat "$STATE/serve.db" 2>/dev/null)" = "$DB" ]; then
  OURS=1
fi

if server_up; then
  if [ "$OURS" != 1 ]; then
    THEIRS="$("$PERCEPT" stats --server "$ADDR" --json | signature || true)"
    MINE="$([ -d "$DB" ] && "$PERCEPT" stats --db "$DB" --json | signature || true)"
    if [ -z "$MINE" ] || [ "$THEIRS" != "$MINE" ]; then
      die "a percept server on $ADDR serves another database or model.
    Stop it, or choose another port: PERCEPT_PORT=7701 make run"
    fi
  fi
  say "ingest through the running server on $ADDR (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'))"
  PYTHONPATH="$SRC/clients/python" python3 - "$ADDR" "$LIST" <<'PY'
import os, sys
from percept_client import Client, PerceptError
addr, listfile = sys.argv[1], sys.argv[2]
n = {"added": 0, "present": 0, "failed": 0}
with Client(addr, token=os.environ.get("PERCEPT_TOKEN"), timeout=600) as c:
    for path in open(listfile).read().splitlines():
        try:
            r = c.ingest(path=path)  # the server reads the file: nothing uploaded
            n["present" if r.get("outcome") == "present" else "added"] += 1
        except (OSError, PerceptError) as e:
            n["failed"] += 1
            print("    skipped %s: %s" % (path, e), file=sys.stderr)
print("    %d added, %d already present, %d failed" % (n["added"], n["present"], n["failed"]))
PY
else
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    die "the server started earlier (pid $(cat "$PIDFILE")) does not answer on $ADDR; see $STATE/serve.log"
  fi
  say "ingest into $DB"
  "$PERCEPT" ingest --db "$DB" --model "$MODEL" - < "$LIST" \
    || die "ingest failed (above); the database keeps what was acknowledged: run again to resume"
  say "starting percept serve on $ADDR"
  setsid nohup "$PERCEPT" serve --db "$DB" --model "$MODEL" --listen "$ADDR" \
    > "$STATE/serve.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  echo "$DB" > "$STATE/serve.db"
  for _ in $(seq 1 600); do
    server_up && break
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { tail -n 20 "$STATE/serve.log" >&2; die "percept serve exited (log above: $STATE/serve.log)"; }
    sleep 0.1
  done
  server_up || die "percept serve does not answer on $ADDR after 60 s (log: $STATE/serve.log)"
  OURS=1
fi

# ---- 5. queries -------------------------------------------------------------
PAGES="$STATE/results"
mkdir -p "$PAGES"
rm -f "$PAGES"/q*.html
if [ -n "${PERCEPT_QUERIES:-}" ]; then mapfile -t TEXTS <<< "$PERCEPT_QUERIES"
else # each has an answer among the Debian photos (wallpapers; skimage: the cat)
  TEXTS=("a photo of a cat" "a goldfish" "a ladybug on a leaf" "sand dunes in the desert" "a yellow flower" "a city skyline")
fi
IMAGES=()
for want in chelsea.png astronaut.png LadyBird.jpg goldfish.png; do
  p="$(grep -m1 "/$want\$" "$LIST" || true)"
  [ -n "$p" ] && [ ${#IMAGES[@]} -lt 2 ] && IMAGES+=("$p")
done
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=("$(sed -n 1p "$LIST")" "$(sed -n "$(( (NPHOTOS + 1) / 2 ))p" "$LIST")")

table() { # JSON results on stdin -> a table
  python3 -c '
import json, sys
hits = json.load(sys.stdin)["results"]
if not hits:
    print("    (no results)")
print("    %4s  %7s  %6s  %s" % ("rank", "score", "id", "path"))
for i, h in enumerate(hits, 1):
    print("    %4d  %7.4f  %6d  %s" % (i, h["score"], h["id"], h["uri"]))'
}
q=0
run_query() { # kind value
  q=$((q + 1))
  local page="$PAGES/q$q.html" out
  if [ "$1" = text ]; then say "text query: \"$2\""; else say "image query: $2"; fi
  out="$("$PERCEPT" search --server "$ADDR" "--$1" "$2" -k 5 --json --html "$page")" \
    || die "query failed (above)"
  printf '%s' "$out" | table
  note "${D}page with thumbnails: $page${N}"
}
for t in "${TEXTS[@]}"; do [ -n "$t" ] && run_query text "$t"; done
for i in "${IMAGES[@]}"; do run_query image "$i"; done

# ---- done -------------------------------------------------------------------
if [ "$OURS" = 1 ]; then
  PID="$(cat "$PIDFILE")"
  STOP="kill $PID            (finishes requests, saves, exits)"
else
  PID="not started by this script"
  STOP="SIGTERM to the process listening on port $PORT (ss -ltnp 'sport = :$PORT' shows it)"
fi
cat <<EOF

${B}percept is running${N} on $ADDR (pid $PID, database $DB, log $STATE/serve.log)
  stop it:      $STOP
  search:       $PERCEPT search --server $ADDR --text "a dog on a beach" -k 5
  result page:  $PERCEPT search --server $ADDR --image photo.jpg --html /tmp/out.html
  from Python:  PYTHONPATH=$SRC/clients/python python3 $SRC/clients/python/example.py $ADDR ~/Pictures "a red car"
                (ingests a folder through the server, then searches it)
  result pages of this run: $PAGES/q1.html ... q$q.html
  more: docs/quickstart.md (bulk ingest, application clients, moderation)
EOF
if [ "$TINY" = 1 ]; then
  echo "${Y}  (tiny test model: the scores above are random, see docs/quickstart.md)${N}"
fi
