#!/usr/bin/env bash
# On the bare GPU machine, from the repo root, with .gpu-bench carried (package.sh made it):
# unpacks Node, installs the wheels into /tmp/site, then runs bench_gpu.py with the arguments
# given (results under $OUT when set, else tools/bench/results).
#   bash tools/bench/gpu/run.sh --rounds 16 --clients 8 --max-batch 4
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PKG=$ROOT/.gpu-bench
mkdir -p /tmp/dops-gpu-bench/bin
xz -dc "$PKG/node.xz" >/tmp/dops-gpu-bench/bin/node
chmod +x /tmp/dops-gpu-bench/bin/node
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PKG"/wheels/*.whl
export PYTHONPATH=/tmp/site:$ROOT/python-workers/src
export DOPS_CREDENTIALS_DIR=$PKG/credentials
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec python3 "$ROOT/tools/bench/gpu/bench_gpu.py" --node /tmp/dops-gpu-bench/bin/node \
  --bundle "$PKG/js/dist/stack.cjs" "$@"
