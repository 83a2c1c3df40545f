#!/usr/bin/env bash
# Create .venv and install ssmarl with its test extras. torch is pinned and installed FIRST so pip uses the
# local CPU wheel; the project's torch range is then already satisfied and nothing else is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev,pettingzoo,tensorboard,ray,deploy]'
