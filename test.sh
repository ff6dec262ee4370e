#!/usr/bin/env bash
# Install everything the tests need into .venv, lint, and run the test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet -r requirements-dev.txt
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
