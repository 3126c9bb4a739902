#!/usr/bin/env bash
# Make sure the interpreter can create virtual environments (Debian splits venv out).
set -euo pipefail
py="${1:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  echo "make: $py not found; install Python 3.11 or newer (Debian: apt-get install python3)" >&2
  exit 1
fi
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "make: eodes-node needs Python 3.11 or newer; $py is $("$py" --version 2>&1)" >&2
  exit 1
}
if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make: installing python3-venv (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "make: $py cannot create virtual environments; run: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
