#!/usr/bin/env bash
# Brings the system up locally: set-up (idempotent), Redis, every service with its workers;
# prints where each listens, runs the demo job when one exists, then stays up until Ctrl-C
# (or exits at once with --once, after the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ONCE=false; [ "${1:-}" = "--once" ] && ONCE=true
bash tools/bootstrap.sh
export NX_DAEMON=false HF_HUB_OFFLINE=1 DOPS_PYTHON="$ROOT/.venv/bin/python" DOPS_BACKEND="${DOPS_BACKEND:-auto}"
mkdir -p var/log var/redis var/models var/artifacts var/inputs

# Redis (the queues' store): AOF everysec, noeviction, as DESIGN §6 asks.
STARTED_REDIS=false
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  STARTED_REDIS=true
  redis-server --daemonize yes --port 6379 --dir "$ROOT/var/redis" --appendonly yes --appendfsync everysec \
    --maxmemory-policy noeviction --logfile "$ROOT/var/log/redis.log"
fi

# The bundled tiny models are the model service's root unless DOPS_MODEL_ROOTS says otherwise.
export DOPS_MODEL_ROOTS="${DOPS_MODEL_ROOTS:-$ROOT/tools/fixtures/generated}"
# The tiny fixtures are built with tiny configs of the same names as the shipped real ones.
[ "$DOPS_MODEL_ROOTS" = "$ROOT/tools/fixtures/generated" ] && export DOPS_MODEL_CONFIG_DIR="${DOPS_MODEL_CONFIG_DIR:-$ROOT/tools/fixtures/generated/configs}"
export DOPS_MODEL_STATE_PATH="${DOPS_MODEL_STATE_PATH:-$ROOT/var/models/registry.json}"
export DOPS_INFERENCE_MODEL_ROOTS="${DOPS_INFERENCE_MODEL_ROOTS:-$DOPS_MODEL_ROOTS}"
[ -n "${DOPS_MODEL_CONFIG_DIR:-}" ] && export DOPS_INFERENCE_CONFIG_DIR="${DOPS_INFERENCE_CONFIG_DIR:-$DOPS_MODEL_CONFIG_DIR}"
export DOPS_ARTIFACT_ROOT="${DOPS_ARTIFACT_ROOT:-$ROOT/var/artifacts}" DOPS_INPUT_ROOT="${DOPS_INPUT_ROOT:-$ROOT/var/inputs}"

# Workflows: the queue services share Redis; postprocessing uses the bundled upscaler and safety checker.
export DOPS_REDIS_URL="${DOPS_REDIS_URL:-redis://127.0.0.1:6379}"
export DOPS_POSTPROCESSING_MODEL_ROOTS="${DOPS_POSTPROCESSING_MODEL_ROOTS:-$DOPS_MODEL_ROOTS}"
fx="$ROOT/tools/fixtures/generated"
[ -d "$fx/safety-checker-tiny-passes-all" ] && export DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH="${DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH:-$fx/safety-checker-tiny-passes-all}"

declare -A PORT=([device]=50051 [memory]=50052 [model]=50053 [inference]=50054 [processing]=50055 [postprocessing]=50056)
ORDER=(device memory inference model postprocessing processing)
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo "stopping services (SIGTERM → graceful: calls finish, workers stop)"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  [ "$STARTED_REDIS" = true ] && redis-cli -p 6379 shutdown >/dev/null 2>&1 || true
}
trap stop_all INT TERM EXIT

for svc in "${ORDER[@]}"; do
  [ -f "apps/$svc/src/main.ts" ] || continue
  DOPS_GRPC_PORT=${PORT[$svc]} DOPS_GRPC_HOST=127.0.0.1 node --import tsx "apps/$svc/src/main.ts" > "var/log/$svc.log" 2>&1 &
  pids+=($!)
done

echo "waiting for the services to report SERVING ..."
for svc in "${ORDER[@]}"; do
  [ -f "apps/$svc/src/main.ts" ] || continue
  for _ in $(seq 1 180); do
    if .venv/bin/python tools/grpc/stranger_client.py "127.0.0.1:${PORT[$svc]}" health 2>/dev/null | grep -q '"SERVING"'; then
      printf '  %-10s 127.0.0.1:%s  SERVING   (log: var/log/%s.log)\n' "$svc" "${PORT[$svc]}" "$svc"; break
    fi
    sleep 1
  done
done
echo "  redis      127.0.0.1:6379"
echo
echo "try:  .venv/bin/python tools/grpc/stranger_client.py 127.0.0.1:50051 call dops.device.v1.DeviceService/ListDevices '{}'"

echo; echo "demo: txt2img → upscale → safety check with the bundled tiny models, through the processing service"
mkdir -p var/out
apps/cli/bin/dops submit --model sd15-tiny.safetensors --prompt "a lighthouse on a cliff at dawn" \
  --width 64 --height 64 --steps 4 --seed 42 \
  --upscale "$fx/upscaler-compact-2x-tiny.safetensors" --safety flag --out var/out
$ONCE && exit 0
echo; echo "up; Ctrl-C stops everything"
wait
