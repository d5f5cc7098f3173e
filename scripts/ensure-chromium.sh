#!/usr/bin/env bash
# Makes sure headless Chromium is available for the status page test: Debian's `chromium` package, installed
# with apt-get when it is missing (as root, or through sudo without a password). $CHROMIUM names another binary.
set -euo pipefail

if [ -n "${CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "the status page test needs Chromium: install it, or set CHROMIUM to its binary" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "the status page test needs Chromium: run \`apt-get install chromium\` as root, or set CHROMIUM" >&2
    exit 1
  fi
fi
echo "Installing Chromium (apt-get install chromium)..." >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
