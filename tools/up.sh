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
# Everything this run writes is owner-only (0700 folders, 0600 files): Redis's AOF (it holds the
# prompts) and log, the services' logs, the model registry, inputs and artifacts. The services
# and their workers inherit the umask; chmod fixes what an older run left readable.
umask 077
mkdir -p var/log var/redis var/models var/artifacts var/inputs
chmod -R go-rwx var

# Redis (the queues' store): AOF everysec, noeviction, as DESIGN §6 asks. Loopback only, the
# default user locked, the ACL user dops whose password tools/redis-credentials.sh made once in
# var/credentials/redis.password; redis-server reads the ACL file (the password's hash), so no
# password is on a command line, and the services get the password file's path, not the password.
bash tools/redis-credentials.sh
REDIS_PASSWORD_FILE="$ROOT/var/credentials/redis.password"
redis_cli() { REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" redis-cli --user dops -h 127.0.0.1 -p 6379 "$@"; }
STARTED_REDIS=false
# (redis-cli goes on as the default user when AUTH fails, so ask who we are rather than PING.)
if [ "$(redis_cli acl whoami 2>/dev/null)" = dops ]; then
  : # ours, from an earlier run that is still up
elif (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  echo "127.0.0.1:6379 is taken by a Redis that refuses var/credentials/redis.password (one of an older," >&2
  echo "unprotected run?). Stop it (e.g. redis-cli -p 6379 shutdown) and run this again." >&2
  exit 1
else
  STARTED_REDIS=true
  redis-server --daemonize yes --bind 127.0.0.1 --protected-mode yes --port 6379 \
    --aclfile "$ROOT/var/credentials/redis.acl" --dir "$ROOT/var/redis" --pidfile "$ROOT/var/redis/redis.pid" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --logfile "$ROOT/var/log/redis.log"
  for _ in $(seq 1 50); do [ "$(redis_cli acl whoami 2>/dev/null)" = dops ] && break; sleep 0.2; done
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
# The local Redis unless DOPS_REDIS_URL names another (which then brings its own credentials).
if [ -z "${DOPS_REDIS_URL:-}" ]; then
  export DOPS_REDIS_URL=redis://dops@127.0.0.1:6379 DOPS_QUEUE_REDIS_PASSWORD_FILE="$REDIS_PASSWORD_FILE"
fi
export DOPS_POSTPROCESSING_MODEL_ROOTS="${DOPS_POSTPROCESSING_MODEL_ROOTS:-$DOPS_MODEL_ROOTS}"
fx="$ROOT/tools/fixtures/generated"
[ -d "$fx/safety-checker-tiny-passes-all" ] && export DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH="${DOPS_POSTPROCESSING_SAFETY_CHECKER_PATH:-$fx/safety-checker-tiny-passes-all}"

# Development credentials from tools/dev-credentials.sh (run by bootstrap).
CRED="$ROOT/var/credentials"
declare -A PORT=([device]=50051 [memory]=50052 [model]=50053 [inference]=50054 [processing]=50055 [postprocessing]=50056)
ORDER=(device memory inference model postprocessing processing)
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo "stopping services (SIGTERM → graceful: calls finish, workers stop)"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  # SIGTERM = SHUTDOWN (AOF flushed); the dops user may not run SHUTDOWN itself.
  [ "$STARTED_REDIS" = true ] && kill -TERM "$(cat "$ROOT/var/redis/redis.pid" 2>/dev/null)" 2>/dev/null || true
}
trap stop_all INT TERM EXIT

for svc in "${ORDER[@]}"; do
  [ -f "apps/$svc/src/main.ts" ] || continue
  # Each service serves TLS with its own development certificate and calls the others with it (mTLS).
  DOPS_SECURITY_CA_FILE="$CRED/ca.crt" DOPS_SECURITY_CERT_FILE="$CRED/$svc.crt" DOPS_SECURITY_KEY_FILE="$CRED/$svc.key" \
  DOPS_SECURITY_TOKENS_FILE="$CRED/tokens.yaml" \
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
echo "  redis      127.0.0.1:6379   (user dops, password in var/credentials/redis.password)"
echo
echo "try:  .venv/bin/python tools/grpc/stranger_client.py --token var/credentials/tokens/ops.token 127.0.0.1:50051 call dops.device.v1.DeviceService/ListDevices '{}'"

# The trained digits model (tools/fixtures/train_digits.py) draws what it is asked for; the bundled
# upscaler is random (it would turn the picture into noise), so this workflow is txt2img → safety check.
echo; echo "demo: txt2img → safety check with the trained digits model, through the processing service"
mkdir -p var/out
apps/cli/bin/dops submit --model digits-sd15.safetensors --prompt "a handwritten digit 7" \
  --width 64 --height 64 --steps 15 --cfg 7 --scheduler "DPM++ 2M" --seed 42 --safety flag --out var/out
$ONCE && exit 0
echo; echo "up; Ctrl-C stops everything"
wait
