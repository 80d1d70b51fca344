#!/usr/bin/env bash
# Video over the protocol: `percept search --segments`, `get` of a video
# and moderation of a video print the same through `percept serve` as with
# --db DIR, and the Python client sees start_s/end_s on segment hits and
# the video fields (docs/protocol.md SEARCH, GET, MODERATE).
# Two short videos are made with the ffmpeg CLI from the tiny-a photos
# (each photo shown for 2 s, so segment i shows photo i).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../common/serve_lib.sh"
IMG="$FIX/tiny-a/images"
# cuts OUT CODEC_ARGS PHOTO...: each photo for 2 s at 10 fps, 160x120.
cuts() {
  local out="$1" codec="$2" inputs=() filter="" cat="" i=0
  shift 2
  for p in "$@"; do
    inputs+=(-loop 1 -t 2 -r 10 -i "$IMG/$p")
    filter+="[$i]scale=160:120,setsar=1,fps=10[v$i];"; cat+="[v$i]"; i=$((i+1))
  done
  ffmpeg -nostdin -loglevel error -y "${inputs[@]}" \
    -filter_complex "${filter}${cat}concat=n=$i:v=1,format=yuv420p" $codec "$out"
}
mkdir -p "$TMP/clips"
cuts "$TMP/clips/a.mp4" "-c:v libx264 -g 20" astronaut.png chelsea.png coffee.png
cuts "$TMP/clips/b.mkv" "-c:v libx264 -g 20" rocket.jpg camera.png
cuts "$TMP/query.mp4" "-c:v libx264 -g 20" camera.png coffee.png   # moderation query
"$PERCEPT_EXE" ingest --db "$TMP/db" --quiet "$IMG" > /dev/null
"$PERCEPT_EXE" ingest --db "$TMP/db" --collection clips --quiet "$TMP/clips" > /dev/null
PORT="$(free_port)"
"$PERCEPT_EXE" serve --db "$TMP/db" --listen "127.0.0.1:$PORT" 2> "$TMP/serve.log" &
PID=$!
wait_server "$PORT"
fail=0; pass=0
compare() {
  local cmd=search a b
  case "$1" in get|moderate) cmd="$1"; shift;; esac
  a="$("$PERCEPT_EXE" $cmd --db "$TMP/db" "$@" 2>&1; echo "exit $?")" || true
  b="$("$PERCEPT_EXE" $cmd --server "127.0.0.1:$PORT" "$@" 2>&1; echo "exit $?")" || true
  if [ "$a" == "$b" ] && [ "${a%exit*}" != "" ]; then pass=$((pass+1)); else
    fail=$((fail+1)); echo "DIFFERENT for $cmd $*"; diff <(echo "$a") <(echo "$b") | head -10; fi
}
VID="$("$PERCEPT_EXE" search --db "$TMP/db" --collection clips --text x -k 2 --json |
       python3 -c 'import json,sys; print(" ".join(str(h["id"]) for h in json.load(sys.stdin)["results"]))')"
[ "$(wc -w <<< "$VID")" -eq 2 ] || { echo "expected 2 videos, got: $VID"; exit 1; }
# The segment hits must be there on the --db side (else the comparison is empty).
n="$("$PERCEPT_EXE" search --db "$TMP/db" --segments --collection clips --text x -k 10 --json |
     python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; print(sum("start" in h and "end" in h for h in r))')"
if [ "$n" -eq 5 ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "expected 5 segment hits with --db, got $n"; fi
for fmt in "" "--json"; do
  compare --segments --collection clips --text "a photo of a cat" -k 5 $fmt
  compare --segments --collection clips --text "rocket" -k 10 $fmt
  compare --segments --collection clips --image "$IMG/chelsea.png" -k 3 $fmt
  compare --segments --collection clips --video "$TMP/query.mp4" -k 4 $fmt
  compare --segments --collection clips --collection default --text "coffee" -k 6 $fmt
  compare --collection clips --text "an astronaut" -k 2 $fmt      # whole-video hits: video fields
  compare --collection clips --image "$IMG/rocket.jpg" -k 2 $fmt
  compare --segments --text "a cat" -k 3 $fmt                      # default collection: no videos
  for v in $VID; do compare --segments --collection clips --id "$v" -k 4 $fmt; done
done
for v in $VID; do compare get "$v"; done
# Moderation of a video: nearest hits carry the query video's segment.
for fmt in "" "--json"; do
  compare moderate --set clips --threshold 0.5 $fmt "$TMP/query.mp4"
  compare moderate --set clips --threshold 0.99 $fmt "$TMP/query.mp4" "$IMG/coffee.png"
done
# INGEST carries the video sampling options: --server stores what --db
# stores with the same flags (1 s segments: a.mp4 has 6, not the default 3).
VOPTS=(--frames 4 --segment-seconds 1 --segment-frames 1)
"$PERCEPT_EXE" ingest --server "127.0.0.1:$PORT" --collection clips1s "${VOPTS[@]}" --quiet "$TMP/clips" > /dev/null
"$PERCEPT_EXE" ingest --db "$TMP/dbx" --collection clips1s "${VOPTS[@]}" --quiet "$TMP/clips" > /dev/null
"$PERCEPT_EXE" export --db "$TMP/dbx" --collection clips1s > "$TMP/x-db.jsonl"
"$PERCEPT_EXE" export --server "127.0.0.1:$PORT" --collection clips1s > "$TMP/x-srv.jsonl"
if python3 - "$TMP/x-db.jsonl" "$TMP/x-srv.jsonl" <<'PY'; then pass=$((pass+1)); else fail=$((fail+1)); fi
import json, os, sys
load = lambda f: {os.path.basename(it["uri"]): it for it in map(json.loads, open(f))}
a, b = load(sys.argv[1]), load(sys.argv[2])
# frames of a batch are encoded together in embedded ingest, one video at a
# time by the server: the same vectors up to float rounding
ok = sorted(a) == sorted(b) == ["a.mp4", "b.mkv"] and a["a.mp4"]["segments"] == 6 and a["b.mkv"]["segments"] == 4
ok = ok and all(a[k]["segments"] == b[k]["segments"] and
                max(abs(x - y) for x, y in zip(a[k]["vector"], b[k]["vector"])) < 1e-5 for k in a)
if not ok:
    print("ingest --server with video options differs from --db:",
          {k: (v.get("segments"), v["vector"][:3]) for k, v in a.items()}, {k: (v.get("segments"), v["vector"][:3]) for k, v in b.items()})
sys.exit(0 if ok else 1)
PY
# Python client: the same answers as embedded mode, field by field.
"$PERCEPT_EXE" search --db "$TMP/db" --segments --collection clips --image "$IMG/coffee.png" -k 5 --json > "$TMP/seg.json"
"$PERCEPT_EXE" moderate --db "$TMP/db" --set clips --threshold 0.5 --json "$TMP/query.mp4" > "$TMP/mod.json" || true
for v in $VID; do "$PERCEPT_EXE" get --db "$TMP/db" "$v"; done > "$TMP/get.jsonl"
PYTHONPATH="$PERCEPT_SRC/clients/python" python3 - "$PORT" "$TMP" "$IMG" <<'PY' || fail=$((fail+1))
import json, sys
import percept_client as pc
port, tmp, img = sys.argv[1:4]
c = pc.Client("127.0.0.1:" + port)
failed = 0
def check(cond, what):
    global failed
    if not cond:
        failed += 1
        print("FAIL:", what)
def same_hits(got, want, what):
    check(len(got) == len(want) and len(want) > 0, "%s: %d hits, embedded %d" % (what, len(got), len(want)))
    for g, w in zip(got, want):
        check(g["id"] == w["id"] and abs(g["score"] - w["score"]) < 1e-6, "%s: hit %r vs %r" % (what, g, w))
        check(("start_s" in g) == ("start" in w), "%s: start present on one side only: %r vs %r" % (what, g, w))
        if "start" in w:
            check(abs(g["start_s"] - w["start"]) < 1e-9 and abs(g["end_s"] - w["end"]) < 1e-9 and g["end_s"] > g["start_s"],
                  "%s: segment %r vs %r" % (what, g, w))
        if w["media"] == "video":
            for k, kw in (("duration_s", "duration"), ("fps", "fps"), ("codec", "codec"), ("width", "width"), ("height", "height")):
                check(g.get(k) == w[kw], "%s: %s %r vs %r" % (what, k, g.get(k), w[kw]))
hits = c.search(image=open(img + "/coffee.png", "rb").read(), segments=True, collections=["clips"], k=5)
same_hits(hits, json.load(open(tmp + "/seg.json"))["results"], "search segments")
check(all(h["media"] == "video" and 0 <= h["start_s"] < h["end_s"] <= h["duration_s"] + 1e-6 for h in hits),
      "segment hits lie inside their video: %r" % hits)
check(hits and hits[0]["uri"].endswith("a.mp4") and hits[0]["start_s"] == 4.0,
      "coffee is a.mp4 at 4-6 s: %r" % (hits[:1],))
plain = c.search(text="x", collections=["clips"], k=2)
check(all("start_s" not in h and h["codec"] == "h264" and h["fps"] == 10 for h in plain), "whole-video hits: %r" % plain)
for line in open(tmp + "/get.jsonl"):
    w = json.loads(line)
    g = c.get(w["id"])
    check(g["media"] == "video" and g["duration_s"] == w["duration"] and g["fps"] == w["fps"] and
          g["codec"] == w["codec"] and g["n_segments"] == w["segments"] and g["width"] == w["width"] and
          g["height"] == w["height"], "get %d: %r vs %r" % (w["id"], g, w))
m = c.moderate(open(tmp + "/query.mp4", "rb").read(), ["clips"], threshold=0.5)
w = json.load(open(tmp + "/mod.json"))["results"][0]
check(bool(m["matched"]) == w["matched"], "moderate matched %r vs %r" % (m["matched"], w["matched"]))
same_hits(m["nearest"], w["nearest"], "moderate video")
check(any("start_s" in h for h in m["nearest"]), "a video query reports its matching segment: %r" % m["nearest"])
print("python: %d failed" % failed)
sys.exit(1 if failed else 0)
PY
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
