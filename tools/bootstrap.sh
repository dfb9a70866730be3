#!/usr/bin/env bash
# One-time (and idempotent) set-up of a fresh machine: npm packages, the Python environment,
# redis-server from Debian's packages, generated protobuf code and the tiny model fixtures.
# Each step is skipped when its inputs have not changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '\033[1;34m[bootstrap]\033[0m %s\n' "$*"; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
export NX_DAEMON=false NX_NO_CLOUD=true NX_SKIP_NX_CACHE=${NX_SKIP_NX_CACHE:-false}

# 1. npm packages, exactly as the lockfile pins them: `npm ci` never writes package-lock.json (the
#    former `npm install` fallback rewrote it on a fresh clone, +367 lines). A lockfile out of step
#    with package.json or a workspace fails here, loudly: run `npm install`, commit the lockfile.
npm_hash=$(cat package.json package-lock.json | sha256sum | cut -c1-16)
if ! stamp_ok node_modules/.dops-stamp "$npm_hash"; then
  log "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$(cat package.json package-lock.json | sha256sum | cut -c1-16)" > node_modules/.dops-stamp
fi

# 2. Python environment in .venv. torch comes from a local CPU-only wheel when pip's
#    find-links has one (far smaller), else from PyPI (the CUDA build, several GB).
PY=${DOPS_BOOTSTRAP_PYTHON:-python3}
py_hash=$(cat python-workers/requirements/*.txt python-workers/pyproject.toml | sha256sum | cut -c1-16)
if ! stamp_ok .venv/.dops-stamp "$py_hash"; then
  log "creating the Python environment (.venv)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  local_torch=""
  for dir in $(pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p") ${PIP_FIND_LINKS:-}; do
    cand=$(ls "$dir"/torch-*.whl 2>/dev/null | head -n1 || true)
    [ -n "$cand" ] && local_torch=$cand && break
  done
  if [ -n "$local_torch" ]; then
    log "torch from the local wheel $local_torch"
    local_tv=$(ls "$(dirname "$local_torch")"/torchvision-*.whl 2>/dev/null | head -n1 || true)
    .venv/bin/pip install --quiet "$local_torch" ${local_tv:+"$local_tv"}
    # torchvision (spandrel needs it) must not drag the CUDA torch back in
    [ -n "$local_tv" ] || .venv/bin/pip install --quiet --no-deps "$(grep '^torchvision' python-workers/requirements/torch.txt)"
  else
    log "torch from PyPI ($(cat python-workers/requirements/torch.txt | grep -v '^#'))"
    .venv/bin/pip install --quiet -r python-workers/requirements/torch.txt
  fi
  .venv/bin/pip install --quiet -r python-workers/requirements/cpu.txt -r python-workers/requirements/dev.txt
  .venv/bin/pip install --quiet --no-deps -e python-workers
  echo "$py_hash" > .venv/.dops-stamp
fi

# 3. redis-server (Debian's package) for the queues and their tests
if ! command -v redis-server >/dev/null 2>&1; then
  log "installing redis-server from Debian's packages"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# 4. generated code (Nx caches it by the proto files' hash)
log "generating protobuf code"
npx nx run proto:generate --outputStyle=static >/dev/null

# 5. tiny model fixtures in the real file formats (deterministic; regenerated when the generator changes)
if [ -f tools/fixtures/generate.py ]; then
  # the generator, and the trained digits model it copies (tools/fixtures/trained, committed)
  fx_hash=$( (cat tools/fixtures/*.py; find tools/fixtures/trained -type f 2>/dev/null | LC_ALL=C sort | xargs -r cat) \
    | sha256sum | cut -c1-16)
  if ! stamp_ok tools/fixtures/generated/.dops-stamp "$fx_hash"; then
    log "generating tiny model fixtures"
    HF_HUB_OFFLINE=1 .venv/bin/python tools/fixtures/generate.py --out tools/fixtures/generated
    echo "$fx_hash" > tools/fixtures/generated/.dops-stamp
  fi
fi
# 6. development credentials (a local CA, a certificate per service and client, bearer tokens;
#    owner-only): the local run and the tests call every service over TLS, authenticated
bash tools/dev-credentials.sh
log "ready"
