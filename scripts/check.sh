#!/usr/bin/env bash
# The whole test suite: lint, types, then every test (core, adapters, cross-package).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
mypy
pytest "$@"
