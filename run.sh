#!/usr/bin/env bash
# Install Loupe into .venv (first run only) and start it. Flags go to launch.py, e.g. ./run.sh --demo
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/.installed-requirements; then
  echo "Installing Loupe's dependencies into .venv (a few minutes the first time)..."
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet -r requirements.txt
  cp requirements.txt .venv/.installed-requirements
fi
exec .venv/bin/python launch.py "$@"
