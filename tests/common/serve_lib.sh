# Sourced by the shell tests that run a real `percept serve` (test_net_cli_server,
# test_net_video, test_http_cli): the fixtures' model in the environment, $TMP
# removed at exit together with the server whose pid is in $PID, free_port and
# wait_server. The caller has `set -euo pipefail`.
FIX="${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}"
export PERCEPT_MODEL="$FIX/tiny-a/tiny-a.safetensors"
export PERCEPT_VOCAB="$FIX/bpe_simple_vocab_16e6.txt.gz"
TMP="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
# A loopback port free now (the server binds it right after).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_server PORT: until the binary door there answers a search (10 s at most).
wait_server() {
  for _ in $(seq 100); do "$PERCEPT_EXE" search --server "127.0.0.1:$1" --text x > /dev/null 2>&1 && return 0; sleep 0.1; done
  return 0
}
