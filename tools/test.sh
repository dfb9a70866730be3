#!/usr/bin/env bash
# Every test: set-up (idempotent), then format/lint/typecheck/jest for TypeScript and pytest for
# Python. Exits non-zero on the first failing stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
export NX_DAEMON=false NX_NO_CLOUD=true HF_HUB_OFFLINE=1 DOPS_PYTHON="$PWD/.venv/bin/python"
echo "== prettier"; npx prettier --check . --log-level warn
echo "== lint, typecheck, jest"
npx nx run-many -t lint typecheck test --outputStyle=static --skipNxCache="${CI:-false}"
echo "== pytest"
.venv/bin/python -m pytest python-workers -q
echo "== all tests passed"
