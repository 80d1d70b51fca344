#!/usr/bin/env bash
# `percept model fetch/list/default` against a local HTTP server: fresh
# download, hash record, resume after a cut connection, a damaged file, a
# server that is down (offline message), unknown names.
set -u
exe=${PERCEPT_EXE:?}; fx=${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

mkdir -p "$tmp/root"
cp "$fx/tiny-a/tiny-a.pt" "$tmp/root/PE-Core-T16-384.pt"
cp "$fx/bpe_simple_vocab_16e6.txt.gz" "$tmp/root/"
start_server() {
  python3 "$here/range_server.py" "$tmp/root" "$tmp/log" "$@" > "$tmp/port" &
  srv=$!
  for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
  port=$(cat "$tmp/port")
}
start_server
export PERCEPT_HOME="$tmp/home" PERCEPT_HUB_URL="http://127.0.0.1:$port"
export PERCEPT_VOCAB_URL="http://127.0.0.1:$port/bpe_simple_vocab_16e6.txt.gz"
unset PERCEPT_MODEL PERCEPT_VOCAB

"$exe" model fetch > "$tmp/out" 2> "$tmp/err"; rc=$?
m="$tmp/home/models"
check "fetch exits 0" "[ $rc -eq 0 ]"
check "model bytes identical" "cmp -s '$m/PE-Core-T16-384.pt' '$fx/tiny-a/tiny-a.pt'"
check "vocab bytes identical" "cmp -s '$m/bpe_simple_vocab_16e6.txt.gz' '$fx/bpe_simple_vocab_16e6.txt.gz'"
want=$(sha256sum "$fx/tiny-a/tiny-a.pt" | cut -d' ' -f1)
check "sha256 recorded" "grep -q '^$want ' '$m/PE-Core-T16-384.pt.sha256'"
check "default link set" "[ \"\$(readlink '$m/default')\" = PE-Core-T16-384.pt ]"
check "no .part left" "! ls '$m'/*.part 2>/dev/null | grep -q ."
"$exe" model list --json > "$tmp/list"
check "list shows default" "grep -q '\"default\":true' '$tmp/list'"
check "list shows sha" "grep -q '$want' '$tmp/list'"
cp "$m/PE-Core-T16-384.pt" "$m/q\"uote.pt"   # a name JSON must escape
"$exe" model list --json > "$tmp/list2"
check "list --json is JSON" "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(x[\"file\"].endswith(\"q\\\"uote.pt\") for x in d[\"models\"])' '$tmp/list2'"
rm "$m/q\"uote.pt"

# Second fetch verifies, downloads nothing.
: > "$tmp/log"
"$exe" model fetch 2> "$tmp/err"; rc=$?
check "refetch verifies only" "[ $rc -eq 0 ] && [ ! -s '$tmp/log' ] && grep -q present '$tmp/err'"

# Damaged file: refused with a message naming it.
printf 'X' | dd of="$m/PE-Core-T16-384.pt" bs=1 seek=1000 conv=notrunc 2>/dev/null
"$exe" model fetch 2> "$tmp/err"; rc=$?
check "damaged file refused" "[ $rc -eq 2 ] && grep -q 'does not match' '$tmp/err'"

# Resume: the server cuts the first response after 1 MB; the second run
# continues with a Range request and the result is byte-identical.
rm -f "$m/PE-Core-T16-384.pt" "$m/PE-Core-T16-384.pt.sha256"
kill $srv; wait $srv 2>/dev/null
start_server --cut-after 1000000
export PERCEPT_HUB_URL="http://127.0.0.1:$port" PERCEPT_VOCAB_URL="http://127.0.0.1:$port/bpe_simple_vocab_16e6.txt.gz"
: > "$tmp/log"
"$exe" model fetch 2> "$tmp/err1"; rc1=$?
check "cut download fails, keeps .part" "[ $rc1 -eq 2 ] && [ -s '$m/PE-Core-T16-384.pt.part' ] && grep -q resume '$tmp/err1'"
"$exe" model fetch 2> "$tmp/err2"; rc2=$?
check "resume completes" "[ $rc2 -eq 0 ] && cmp -s '$m/PE-Core-T16-384.pt' '$fx/tiny-a/tiny-a.pt'"
check "resume used Range" "grep -q 'range=bytes=1000000-' '$tmp/log'"

# Offline: nothing listening.
kill $srv; wait $srv 2>/dev/null
export PERCEPT_HOME="$tmp/home2"
"$exe" model fetch PE-Core-B16-224 2> "$tmp/err"; rc=$?
check "offline exits 2" "[ $rc -eq 2 ]"
check "offline says where to put files" "grep -q 'put it at' '$tmp/err' && grep -q '$tmp/home2/models' '$tmp/err'"

"$exe" model fetch PE-Core-X99 2> "$tmp/err"; rc=$?
check "unknown name" "[ $rc -eq 2 ] && grep -q 'unknown model' '$tmp/err'"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
