#!/usr/bin/env bash
# Installs the Debian 12 packages percept needs, only those that are missing.
# Safe to run repeatedly; needs root (or sudo) only when something is missing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config git ca-certificates dpkg-dev
      libopenblas-dev liblapack-dev libdnnl-dev libfaiss-dev liblmdb-dev lmdb-utils
      libvips-dev libvips-tools liblcms2-dev libuv1-dev libutf8proc-dev zlib1g-dev
      libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
      libmsgpack-dev libcjson-dev libh2o-dev libxxhash-dev libcurl4-openssl-dev libssl-dev clang libclang-rt-14-dev python3
      gnome-backgrounds mate-backgrounds ukui-wallpapers  # real photos for the engine tests (~100 MB)
      qemu-user  # tests/encoder_conformance/test_emulated_cpu: the binaries on an emulated Zen 3 and Haswell
      chromium)  # the search page's test (tests/web) drives it headless
# node + npm for the page test (playwright-core from tests/web's lock file):
# Debian's, unless a node with npm is already installed.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
