#!/usr/bin/env bash
# The main job: set up (idempotent), then audit the built-in demo deployment on loopback.
# Outputs go to ./dcsaudit-demo-out (report.json, annex.md, annex.html) unless --out DIR is given.
# Exit status is dcsaudit's: 0 policy passed, 1 policy failures (the demo has some on purpose), 2, 3.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
exec "$repo/.venv/bin/dcsaudit" demo "$@"
