#!/usr/bin/env bash
# The same binaries on other CPUs than this one, under QEMU's user-mode
# emulation (qemu-x86_64 -cpu MODEL: the CPUID of that model, its
# instructions only; an instruction it lacks is SIGILL, as on the real CPU).
#
# EPYC-Milan is a Zen 3 (AVX2, no AVX-512), Haswell an older Intel with
# AVX2: the encoder must choose its AVX2 level at run time (pe_cpu.c,
# oneDNN), pass conformance against the official outputs there, and
# `percept` must ingest and search end to end with the same ranking as
# natively. Environment untouched (OPENBLAS_CORETYPE=Haswell where set is
# right for both models). LMDB's 64 GiB default map does not fit QEMU's
# guest address space: --map-size 1g.
set -euo pipefail
BIN="$1"   # the build's tests/encoder_conformance directory
FIX="${PERCEPT_FIXTURES:-$PERCEPT_SRC/../shared/pe-fixtures}"
export PERCEPT_MODEL="$FIX/tiny-a/tiny-a.safetensors"
export PERCEPT_VOCAB="$FIX/bpe_simple_vocab_16e6.txt.gz"
QEMU="$(command -v qemu-x86_64)" || { echo "qemu-x86_64 missing (package qemu-user: scripts/deps.sh)"; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
fail=0
quiet() { grep -v "TCG doesn't support requested feature" || true; }

"$PERCEPT_EXE" ingest --db "$TMP/native" --map-size 1073741824 --quiet "$FIX/tiny-a/images" > /dev/null
"$PERCEPT_EXE" search --db "$TMP/native" --text "a photo of a cat" -k 6 --json > "$TMP/native.json"

for cpu in EPYC-Milan Haswell; do
  out="$("$QEMU" -cpu "$cpu" "$BIN/test_pe_conformance_safetensors" 2>&1 | quiet)" || {
    echo "$cpu: conformance failed:"; echo "$out" | tail -20; fail=1; continue; }
  isa="$(grep -o 'instruction set [a-z0-9_]*' <<< "$out" | head -1)"
  kern="$(grep -o 'encoder kernels at [a-z0-9+]*' <<< "$out" | head -1)"
  echo "$cpu: conformance passed; $isa (oneDNN), $kern; $(grep 'worst max rel diff' <<< "$out")"
  [ "$isa" = "instruction set avx2" ] || { echo "$cpu: oneDNN should run avx2, ran: $isa"; fail=1; }
  # (cpuid as the model has it: no AVX-512 level detected)
  [ "$kern" = "encoder kernels at avx2" ] || { echo "$cpu: own kernels should run avx2: $kern"; fail=1; }
  out="$("$QEMU" -cpu "$cpu" "$BIN/test_pe_kernels" 2>&1 | quiet)" || {
    echo "$cpu: test_pe_kernels failed:"; echo "$out" | tail -20; fail=1; }
  # end to end: the whole binary (FAISS, libvips, LMDB) on that CPU
  db="$TMP/db-$cpu"
  if ! "$QEMU" -cpu "$cpu" "$PERCEPT_EXE" ingest --db "$db" --map-size 1073741824 --quiet \
       "$FIX/tiny-a/images" 2>&1 | quiet > "$TMP/ingest.log"; then
    echo "$cpu: ingest failed:"; cat "$TMP/ingest.log"; fail=1; continue
  fi
  "$QEMU" -cpu "$cpu" "$PERCEPT_EXE" search --db "$db" --map-size 1073741824 --text "a photo of a cat" -k 6 --json \
    2> /dev/null > "$TMP/$cpu.json" || { echo "$cpu: search failed"; fail=1; continue; }
  # same files in the same order (ids follow ingest order), scores within 1e-4 (other kernels: other roundings)
  if python3 - "$TMP/native.json" "$TMP/$cpu.json" <<'EOF'
import json, sys
a, b = (json.load(open(p))["results"] for p in sys.argv[1:3])
ids_a, ids_b = [h["uri"].rsplit("/", 1)[1] for h in a], [h["uri"].rsplit("/", 1)[1] for h in b]
worst = max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) if a and b else 1
print(f"  ranking native {ids_a}, emulated {ids_b}, largest score difference {worst:.2e}")
sys.exit(0 if len(a) == 6 and ids_a == ids_b and worst < 1e-4 else 1)
EOF
  then echo "$cpu: ingest + search: same ranking as natively"
  else echo "$cpu: ranking differs from the native run"; fail=1; fi
done
exit $fail
