#!/usr/bin/env bash
# The tests: set up (idempotent), then lint (ruff), type-check (mypy) and run pytest against real peers.
# Extra arguments go to pytest (e.g. scripts/test.sh -k tls -x).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
cd "$repo"
.venv/bin/ruff check --no-cache .  # no cache: a stale one hid import-order changes once
.venv/bin/mypy
exec .venv/bin/pytest "$@"
