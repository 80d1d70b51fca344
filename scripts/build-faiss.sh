#!/usr/bin/env bash
# Builds FAISS 1.7.3 from Debian's own source package with AVX2 kernels, once,
# into $1 (default build/faiss). Produces:
#   $1/lib/libfaiss_avx2.a   FAISS itself (only the faiss_avx2 target)
#   $1/lib/libfaiss_c_avx2.a its C API (c_api/*.cpp), compiled by us
#   $1/include/               faiss/ headers incl. c_api
# On a CPU without AVX2 nothing is built: CMake then falls back to Debian's
# generic libfaiss.a. Why: Debian's libfaiss.a is generic x86-64 and 2-9x
# slower at search; see docs/design.md.
set -euo pipefail
out=$(realpath -m "${1:-build/faiss}")
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then variant=avx2; else variant=generic; fi
stamp="$out/.built-1.7.3-$variant-2"  # -2: c_api/utils included
[ -f "$stamp" ] && exit 0
mkdir -p "$out/src"
cd "$out/src"
if [ ! -d faiss-1.7.3 ]; then
  # deb-src entry passed through apt's options: nothing on the system changes.
  echo "deb-src http://deb.debian.org/debian bookworm main" > sources.list
  mkdir -p lists/partial
  APT=(-o Dir::Etc::SourceList="$out/src/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o Dir::State::Lists="$out/src/lists" -o Debug::NoDropPrivs=1 -o APT::Sandbox::User=root)
  apt-get "${APT[@]}" update -qq
  apt-get "${APT[@]}" source --download-only faiss=1.7.3-2 >/dev/null 2>&1 ||
    apt-get "${APT[@]}" source --download-only faiss
  dpkg-source --no-check -x faiss_1.7.3-*.dsc faiss-1.7.3 >/dev/null
fi
src="$out/src/faiss-1.7.3"
jobs=$(nproc)
mkdir -p "$out/lib" "$out/capi"
if [ "$variant" = generic ]; then
  # No AVX2: Debian's generic libfaiss.a, with the C API compiled against its
  # own headers.
  echo "build-faiss: no AVX2 on this CPU; using Debian's generic libfaiss.a" >&2
  objs=()
  for f in "$src"/c_api/*.cpp "$src"/c_api/impl/*.cpp "$src"/c_api/utils/*.cpp; do
    [ -f "$f" ] || continue
    o="$out/capi/$(basename "${f%.cpp}").o"
    g++ -O2 -fPIC -std=c++17 -fopenmp -I/usr/include -I"$src" -c "$f" -o "$o"
    objs+=("$o")
  done
  rm -f "$out/lib/libfaiss_c_generic.a.tmp"
  ar rcs "$out/lib/libfaiss_c_generic.a.tmp" "${objs[@]}"
  mv "$out/lib/libfaiss_c_generic.a.tmp" "$out/lib/libfaiss_c_generic.a"
  touch "$stamp"
  exit 0
fi
cmake -S "$src" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release \
  -DFAISS_OPT_LEVEL=avx2 -DFAISS_ENABLE_GPU=OFF -DFAISS_ENABLE_PYTHON=OFF \
  -DFAISS_ENABLE_C_API=OFF -DBUILD_TESTING=OFF -DBUILD_SHARED_LIBS=OFF \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON >/dev/null
cmake --build "$out/cmake" --target faiss_avx2 -j "$jobs"
mkdir -p "$out/lib" "$out/include/faiss" "$out/capi"
cp "$out/cmake/faiss/libfaiss_avx2.a" "$out/lib/"
# The C API: compiled against the same headers, archived on its own.
objs=()
for f in "$src"/c_api/*.cpp "$src"/c_api/impl/*.cpp "$src"/c_api/utils/*.cpp; do
  [ -f "$f" ] || continue
  o="$out/capi/$(basename "${f%.cpp}").o"
  g++ -O2 -fPIC -std=c++17 -fopenmp -mavx2 -mfma -mf16c -mpopcnt -I"$src" -c "$f" -o "$o"
  objs+=("$o")
done
rm -f "$out/lib/libfaiss_c_avx2.a.tmp"
ar rcs "$out/lib/libfaiss_c_avx2.a.tmp" "${objs[@]}"
mv "$out/lib/libfaiss_c_avx2.a.tmp" "$out/lib/libfaiss_c_avx2.a"
(cd "$src" && find faiss c_api -name '*.h' -exec cp --parents {} "$out/include/" \;)
# c_api headers are included as <faiss/c_api/...> by Debian; keep both layouts.
mkdir -p "$out/include/faiss/c_api"; cp -r "$src"/c_api/. "$out/include/faiss/c_api/" 2>/dev/null || true
touch "$stamp"
echo "build-faiss: done ($out)" >&2
