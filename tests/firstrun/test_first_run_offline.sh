#!/usr/bin/env bash
# scripts/first-run.sh without network: the model download fails (the hub
# is a closed loopback port), and the script must say exactly what is missing
# (the model file and where it goes) and how to proceed (mirror, copy, MODEL=,
# the tiny model), exit non-zero, and start nothing. Also: a MODEL that does
# not exist, and a .pt whose configuration cannot be known.
set -euo pipefail
FIX="${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export PERCEPT_HOME="$TMP/home"
BUILD="$(dirname "$PERCEPT_EXE")"
CLOSED="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export PERCEPT_HUB_URL="http://127.0.0.1:$CLOSED" PERCEPT_VOCAB_URL="http://127.0.0.1:$CLOSED/vocab.txt.gz"
export PERCEPT_PORT="$CLOSED"
unset PERCEPT_VOCAB PERCEPT_MODEL || true
rc=0
fail() { echo "FAIL: $*"; rc=1; }

set +e
"$PERCEPT_SRC/scripts/first-run.sh" "$BUILD" > "$TMP/out" 2>&1; st=$?
set -e
cat "$TMP/out"
[ "$st" = 1 ] || fail "exit status $st, expected 1"
M="$PERCEPT_HOME/models"
grep -qF "$M/PE-Core-T16-384.pt" "$TMP/out" || fail "does not name the missing model file"
grep -qF "bpe_simple_vocab_16e6.txt.gz" "$TMP/out" || fail "does not name the vocabulary"
grep -qF "PERCEPT_HUB_URL=" "$TMP/out" || fail "does not mention a mirror"
grep -qF "make run MODEL=" "$TMP/out" || fail "does not say how to use a local model"
grep -qF "tiny-a.safetensors" "$TMP/out" || fail "does not offer the tiny model"
grep -qF "127.0.0.1:$CLOSED" "$TMP/out" || fail "does not show the address it tried"
[ ! -e "$PERCEPT_HOME/first-run/serve.pid" ] || fail "started a server"
[ ! -e "$M/PE-Core-T16-384.pt" ] || fail "left a model file behind"

set +e
"$PERCEPT_SRC/scripts/first-run.sh" "$BUILD" "$TMP/nope.pt" > "$TMP/out2" 2>&1; st=$?
set -e
[ "$st" = 1 ] && grep -qF "MODEL=$TMP/nope.pt: no such file" "$TMP/out2" || { cat "$TMP/out2"; fail "missing MODEL not reported"; }

set +e
"$PERCEPT_SRC/scripts/first-run.sh" "$BUILD" "$FIX/tiny-a/tiny-a.pt" > "$TMP/out3" 2>&1; st=$?
set -e
[ "$st" = 1 ] && grep -qF "configuration" "$TMP/out3" && grep -qF ".safetensors" "$TMP/out3" \
  || { cat "$TMP/out3"; fail ".pt without configuration not explained"; }
exit $rc
