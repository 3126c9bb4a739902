#!/usr/bin/env bash
# Make sure Debian's chromium is there for the browser tests (Playwright drives it; it never
# downloads a browser of its own). Installs the package when run as root and it is missing;
# otherwise says in one line what to do.
set -euo pipefail
say() { echo "browser: $*" >&2; }
browser=/usr/bin/chromium

if [ ! -x "$browser" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "chromium is not installed; installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "chromium is not installed; run: sudo apt-get install chromium"
    exit 1
  fi
fi
if ! timeout 60 "$browser" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1; then
  say "$browser does not start; run it by hand to see why ($browser --headless --version)"
  exit 1
fi
