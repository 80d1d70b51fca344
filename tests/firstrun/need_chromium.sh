#!/usr/bin/env bash
# Installs Debian's chromium for the result-page tests when it is missing.
# Kept out of scripts/deps.sh on purpose: it is large (~250 MB installed)
# and only tests/firstrun needs it. Needs root or sudo, like deps.sh.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && exit 0
echo "tests/firstrun: installing chromium (headless browser for the result-page test)" >&2
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# apt may be busy (another install): wait for its lock instead of failing.
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1
