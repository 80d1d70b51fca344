#!/usr/bin/env bash
# The Python client (clients/python/percept_client.py, built-in MessagePack
# codec) against a live `percept serve` on a free loopback port, with a token.
set -euo pipefail
FIX="${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}"
TMP="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
echo "tok-$RANDOM$RANDOM" > "$TMP/token"
vips copy "$FIX/tiny-a/images/coffee.png" "$TMP/coffee-q90.jpg[Q=90]"  # a near duplicate
PERCEPT_VOCAB="$FIX/bpe_simple_vocab_16e6.txt.gz" "$PERCEPT_EXE" serve --db "$TMP/db" \
  --model "$FIX/tiny-a/tiny-a.safetensors" --listen "127.0.0.1:$PORT" --token-file "$TMP/token" &
PID=$!
PYTHONPATH="$PERCEPT_SRC/clients/python" python3 - "$PORT" "$TMP/token" "$FIX/tiny-a/images" "$TMP/coffee-q90.jpg" <<'PY'
import math, os, socket, sys, time
import percept_client as pc
port, token, images = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
addr = "127.0.0.1:" + port
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", int(port))).close(); break
    except OSError:
        time.sleep(0.05)
failed = passed = 0
def check(cond, what):
    global failed, passed
    if cond:
        passed += 1
    else:
        failed += 1; print("FAIL:", what)
# Without the token: PING only.
with pc.Client(addr) as c:
    c.ping()
    try:
        c.stats(); check(False, "STATS without token")
    except pc.PerceptError as e:
        check(e.name == "AUTH" and e.code == -16, "AUTH error: %s" % e)
try:
    pc.Client(addr, token="wrong"); check(False, "wrong token accepted")
except pc.PerceptError as e:
    check(e.name == "AUTH", "wrong token: %s" % e)
with pc.Client(addr, token=token, timeout=60) as c:
    names = sorted(n for n in os.listdir(images) if n.endswith((".png", ".jpg")))
    ids = {}
    for n in names:
        r = c.ingest(data=open(os.path.join(images, n), "rb").read(), uri=n, labels=["photos"], meta={"file": n})
        check(r["outcome"] == "added", "ingest %s" % n); ids[n] = r["id"]
    hits = c.search(text="a photo of a cat", k=3)
    check(len(hits) == 3 and all(-1 <= h["score"] <= 1 for h in hits), "text search")
    img = open(os.path.join(images, "coffee.png"), "rb").read()
    check(c.search(image=img, k=1)[0]["id"] == ids["coffee.png"], "image search finds itself")
    v = c.embed(image=img)
    check(len(v) == c.dim and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4, "embed: unit vector")
    check(c.search(vector=v, k=1)[0]["id"] == ids["coffee.png"], "vector search")
    it = c.get(ids["rocket.jpg"], vector=True)
    check(it["uri"] == "rocket.jpg" and it["meta"] == {"file": "rocket.jpg"} and it["labels"] == ["photos"], "get: %r" % {k: it[k] for k in ("uri", "meta", "labels")})
    check(c.search(id=ids["rocket.jpg"], k=10, include_self=True)[0]["id"] == ids["rocket.jpg"], "search by id")
    probs = c.classify(img, ["cat", "coffee"])
    check(abs(sum(probs.values()) - 1) < 1e-4, "classify sums to 1")
    # Pipelining: 10 requests, then 10 answers, ids matched.
    sent = [c.send("PING") if i % 2 else c.send("EMBED", {"text": "t%d" % i}) for i in range(10)]
    got = sorted(c.recv()[0] for _ in range(10))
    check(got == sorted(sent), "pipelined ids")
    # EXPORT, paged 2 at a time: every item once, in id order, vectors intact.
    items = list(c.export(page=2))
    check(sorted(ids.values()) == [x["id"] for x in items], "export: %r" % [x["id"] for x in items])
    ex = {x["id"]: x for x in items}
    check(ex[ids["coffee.png"]]["uri"] == "coffee.png" and
          max(abs(a - b) for a, b in zip(ex[ids["coffee.png"]]["vector"], v)) < 1e-5, "export: vector == embed")
    check(all("vector" not in x for x in c.export(vector=False)), "export without vectors")
    # DUPS: a re-encoded copy of coffee.png is its near duplicate, and the
    # only one; no two items share bytes.
    near = c.ingest(data=open(sys.argv[4], "rb").read(), uri="coffee-q90.jpg")["id"]
    groups = c.dups(tier="near")
    check([sorted(g["ids"]) for g in groups] == [sorted([ids["coffee.png"], near])] and groups[0]["min_score"] > 0.99,
          "dups near: %r" % groups)
    check(c.dups(tier="exact") == [], "dups exact: none")
    c.delete([near])
    check(c.delete([ids["camera.png"]]) == 1, "delete")
    try:
        c.get(ids["camera.png"]); check(False, "deleted item still there")
    except pc.PerceptError as e:
        check(e.name == "NOT_FOUND", "NOT_FOUND: %s" % e)
    st = c.stats()
    check(st["db"]["n_items"] == len(names) - 1 and st["server"]["ops"]["INGEST"]["requests"] == len(names) + 1, "stats")
    check([x["name"] for x in c.collections()] == ["default"], "collections")
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
kill -TERM "$PID"
wait "$PID"
PID=""
echo "server exited 0 after SIGTERM"
