#!/bin/sh
# Install Debian's Chromium for the browser tests (tests/e2e/test_dashboard.py), if missing.
# Playwright drives it with executable_path=/usr/bin/chromium; `playwright install` is never
# run, since it downloads a browser at run time.
set -eu
# fonts-noto-cjk: the screenshots show Korean and Japanese markings (군사II급비밀, 極秘).
if [ -x /usr/bin/chromium ] && [ -d /usr/share/fonts/opentype/noto ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium fonts-noto-cjk
test -x /usr/bin/chromium
