#!/usr/bin/env bash
# Install everything the tests need, lint, and run the test suite on the CPU.
# System packages (Debian): espeak-ng and sox make speech fixtures; Chromium runs the browser
# tests; Xvfb is a screen for the screen-capture test; npm fetches axe-core (package-lock.json)
# for the accessibility tests; ExifTool (libimage-exiftool-perl) reads back the alt text that
# app/tasks/metadata.py writes into images.
set -euo pipefail
cd "$(dirname "$0")"
SYSTEM_PACKAGES=(espeak-ng sox libsox-fmt-all chromium xvfb libimage-exiftool-perl)
missing=()
for package in "${SYSTEM_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
npm ci --no-audit --no-fund --silent
.venv/bin/ruff check .
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
