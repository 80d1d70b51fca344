#!/usr/bin/env bash
# `percept search --html`: the page rendered by a real headless browser
# (Debian's chromium). The DOM after load must hold every result of the
# query (id, rank, score as in --json), every thumbnail must have decoded
# (naturalWidth/Height written into the DOM by a probe script added to a
# copy of the page) with the photo's aspect ratio and at most 256 px, hostile
# file names must come out as text (no injected elements), bytes that are
# not UTF-8 as U+FFFD, a file gone since ingest as a placeholder, and the
# page must reference nothing outside itself.
set -euo pipefail
FIX="$(realpath "${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}")"
"$PERCEPT_SRC/tests/firstrun/need_chromium.sh"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export PERCEPT_VOCAB="$FIX/bpe_simple_vocab_16e6.txt.gz"
MODEL="$FIX/tiny-a/tiny-a.safetensors"
mkdir "$TMP/photos"
cp "$FIX"/tiny-a/images/*.png "$FIX"/tiny-a/images/*.jpg "$TMP/photos/"
# Distinct bytes (ingest stores identical bytes once), awkward names.
NASTY="$TMP/photos/x<b>bold<b> & \"q\" 'a' <img src=x onerror=alert(1)> &amp;.jpg"
vips copy "$FIX/tiny-a/images/coffee.png" "$TMP/nasty.jpg" && mv "$TMP/nasty.jpg" "$NASTY"
vips copy "$FIX/tiny-a/images/camera.png" "$TMP/bad.webp" && mv "$TMP/bad.webp" "$TMP/photos/bad"$'\xff\xfe'"name.webp"
vips copy "$FIX/tiny-a/images/rocket.jpg" "$TMP/photos/gone.png"
"$PERCEPT_EXE" ingest --db "$TMP/db" --model "$MODEL" --quiet "$TMP/photos"
rm "$TMP/photos/gone.png"
N=$(ls "$TMP/photos" | wc -l); N=$((N + 1))

render() { # page -> dom (dump after load, with the probe)
  python3 - "$1" "$1.probe.html" <<'PY'
import sys
page = open(sys.argv[1], "rb").read()
probe = (b"<script>addEventListener('load',()=>{for(const i of document.images){"
         b"i.setAttribute('data-nw',i.naturalWidth);i.setAttribute('data-nh',i.naturalHeight);}"
         b"document.body.setAttribute('data-loaded','1');});</script></body>")
assert page.count(b"</body>") == 1
open(sys.argv[2], "wb").write(page.replace(b"</body>", probe))
PY
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$TMP/chrome" --virtual-time-budget=10000 --dump-dom \
    "file://$1.probe.html" > "$1.dom" 2> "$1.chrome.log" || { cat "$1.chrome.log" >&2; exit 1; }
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$TMP/chrome" --window-size=1280,900 --screenshot="$1.png" \
    "file://$1" >> "$1.chrome.log" 2>&1 || { cat "$1.chrome.log" >&2; exit 1; }
}

check() { # page json dom query-image-or-empty
  python3 - "$@" "$TMP/photos" "$N" <<'PY'
import html.parser, json, os, re, subprocess, sys
page_path, json_path, dom_path, qimage, photos, n_items = sys.argv[1:7]
fails = []
def check(cond, what):
    if not cond: fails.append(what)
raw = open(page_path, "rb").read()
try:
    raw.decode("utf-8", "strict")
except UnicodeDecodeError as e:
    check(False, "page is not UTF-8: %s" % e)
text = raw.decode("utf-8", "replace")
srcs = re.findall(r'\ssrc="([^"]*)"', text)
check(all(s.startswith("data:image/jpeg;base64,") for s in srcs), "a src that is not an embedded JPEG")
for bad in ("<link", "href=", "url(", "@import", "<script", "<iframe", "<object"):
    check(bad not in text, "page contains %r" % bad)
results = json.loads(open(json_path, "rb").read().decode("utf-8", "replace"))["results"]
check(len(results) == int(n_items), "expected all %s items, --json gave %d" % (n_items, len(results)))

class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.hits = {}; self.cur = None; self.field = None; self.tags = {}
        self.body = {}; self.summary = None; self.qimg = []
        self.in_query = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "body": self.body = a
        if tag == "p" and a.get("id") == "summary": self.summary = a
        if tag == "div" and a.get("class") == "query": self.in_query = 1
        if tag == "li" and a.get("class") == "hit":
            self.cur = {"attrs": a, "imgs": [], "uri": "", "nothumb": ""}; self.hits[a["id"]] = self.cur
            self.in_query = 0
        if tag == "img":
            (self.qimg if self.in_query else self.cur["imgs"]).append(a)
        if tag == "div" and a.get("class") in ("uri", "nothumb"): self.field = a["class"]
    def handle_endtag(self, tag):
        if tag == "div": self.field = None
        if tag == "li": self.cur = None
    def handle_data(self, d):
        if self.cur is not None and self.field: self.cur[self.field] += d

dom = Dom(); dom.feed(open(dom_path, encoding="utf-8", errors="replace").read())
check(dom.body.get("data-loaded") == "1", "the page's load event did not run in the browser")
check(dom.tags.get("b", 0) == 0, "a <b> element was injected from a file name")
check(dom.tags.get("script", 0) == 1, "scripts in the DOM besides the probe: %d" % dom.tags.get("script", 0))
check(dom.summary is not None and dom.summary.get("data-count") == str(len(results)), "summary count")
check(len(dom.hits) == len(results), "DOM has %d hits, --json %d" % (len(dom.hits), len(results)))

def dims(path):
    out = subprocess.run(["vipsheader", "-a", path], capture_output=True, text=True, errors="replace").stdout
    w = int(re.search(r"^width: (\d+)", out, re.M).group(1)); h = int(re.search(r"^height: (\d+)", out, re.M).group(1))
    return w, h
def thumb_ok(img, path, what):
    nw, nh = int(img.get("data-nw", 0)), int(img.get("data-nh", 0))
    check(nw > 0 and nh > 0, "%s: image did not decode (naturalWidth %d)" % (what, nw))
    if nw and nh:
        w, h = dims(path)
        check(max(nw, nh) <= 256, "%s: thumbnail %dx%d larger than 256" % (what, nw, nh))
        check(max(nw, nh) >= min(256, max(w, h)) - 1, "%s: thumbnail %dx%d smaller than needed" % (what, nw, nh))
        check(abs(nw / nh - w / h) < 0.03 * (w / h), "%s: aspect %dx%d vs photo %dx%d" % (what, nw, nh, w, h))
decoded = 0
for rank, r in enumerate(results, 1):
    h = dom.hits.get("hit-%d" % r["id"])
    if h is None:
        check(False, "hit id %d missing from the DOM" % r["id"]); continue
    a = h["attrs"]
    check(a.get("data-rank") == str(rank), "id %d: rank %s, expected %d" % (r["id"], a.get("data-rank"), rank))
    check(abs(float(a.get("data-score", "nan")) - r["score"]) < 2e-6, "id %d: score %s vs %r" % (r["id"], a.get("data-score"), r["score"]))
    uri = r["uri"]
    if os.path.basename(uri) == "gone.png":
        check(not h["imgs"] and "no preview" in h["nothumb"], "removed file: expected a placeholder")
        continue
    check(len(h["imgs"]) == 1, "id %d: %d images" % (r["id"], len(h["imgs"])))
    if "\ufffd" in uri:
        check("\ufffd" in h["uri"] and "name.webp" in h["uri"], "non-UTF-8 name not shown with U+FFFD: %r" % h["uri"])
        path = [os.path.join(photos, n) for n in os.listdir(photos) if n.endswith("name.webp")][0]
    else:
        check(h["uri"] == uri, "id %d: path shown as %r, stored %r" % (r["id"], h["uri"], uri))
        path = uri
    if h["imgs"]:
        thumb_ok(h["imgs"][0], path, os.path.basename(path)); decoded += 1
check(decoded == len(results) - 1, "decoded %d thumbnails of %d" % (decoded, len(results) - 1))
if qimage:
    check(len(dom.qimg) == 1, "query image not shown")
    if dom.qimg: thumb_ok(dom.qimg[0], qimage, "query image")
for f in fails: print("FAIL:", f)
print("%s: %d results, %d thumbnails decoded, %d failures" % (os.path.basename(page_path), len(results), decoded, len(fails)))
sys.exit(1 if fails else 0)
PY
}

# Text query through the embedded database; image query too.
"$PERCEPT_EXE" search --db "$TMP/db" --text "a photo of a cat" -k 50 --json --html "$TMP/text.html" > "$TMP/text.json"
"$PERCEPT_EXE" search --db "$TMP/db" --image "$FIX/tiny-a/images/chelsea.png" -k 50 --include-self --json \
  --html "$TMP/image.html" > "$TMP/image.json"
# The plain output is unchanged by --html.
"$PERCEPT_EXE" search --db "$TMP/db" --text "a photo of a cat" -k 3 > "$TMP/plain.txt"
"$PERCEPT_EXE" search --db "$TMP/db" --text "a photo of a cat" -k 3 --html "$TMP/p.html" > "$TMP/plain2.txt"
cmp "$TMP/plain.txt" "$TMP/plain2.txt"
render "$TMP/text.html"
render "$TMP/image.html"
rc=0
check "$TMP/text.html" "$TMP/text.json" "$TMP/text.html.dom" "" || rc=1
check "$TMP/image.html" "$TMP/image.json" "$TMP/image.html.dom" "$FIX/tiny-a/images/chelsea.png" || rc=1
# The image query finds the photo itself first.
python3 -c 'import json,sys; r=json.loads(open(sys.argv[1],"rb").read().decode("utf-8","replace"))["results"][0]; sys.exit(0 if r["uri"].endswith("/chelsea.png") and r["score"] > 0.999 else 1)' "$TMP/image.json" \
  || { echo "FAIL: image query did not find itself first"; rc=1; }
# Screenshots: real PNGs of the window size.
for s in "$TMP/text.html.png" "$TMP/image.html.png"; do
  python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); w,h=struct.unpack(">II",b[16:24]); sys.exit(0 if b[:8]==b"\x89PNG\r\n\x1a\n" and (w,h)==(1280,900) and len(b)>20000 else 1)' "$s" \
    || { echo "FAIL: screenshot $s"; rc=1; }
done
# An unwritable destination is an error naming the file; nothing left behind.
if "$PERCEPT_EXE" search --db "$TMP/db" --text cat --html "$TMP/nodir/x.html" > /dev/null 2> "$TMP/err"; then
  echo "FAIL: --html into a missing directory succeeded"; rc=1
fi
grep -q "nodir/x.html" "$TMP/err" || { echo "FAIL: error does not name the file: $(cat "$TMP/err")"; rc=1; }
exit $rc
