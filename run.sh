#!/usr/bin/env bash
# Install Loupe into .venv (first run only) and start it. Flags go to launch.py, e.g. ./run.sh --demo
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/.installed-requirements; then
  echo "Installing Loupe's dependencies into .venv, about 7 GB on disk (3.2 GB of it the CUDA"
  echo "libraries that PyPI's PyTorch brings on every Linux PC, GPU or not: see the README)."
  echo "This takes some minutes the first time (llama.cpp is compiled for this machine);"
  echo "pip names each package as it goes."
  python3 -m venv .venv
  .venv/bin/python -m pip install --progress-bar on --no-warn-script-location -r requirements.txt
  cp requirements.txt .venv/.installed-requirements
  echo "Installed. Starting Loupe..."
fi
exec .venv/bin/python launch.py "$@"
