#!/usr/bin/env bash
# Development credentials for the local run and the tests (idempotent; kept while the CA is valid):
# a local CA, one mTLS certificate per service (OU=internal), client certificates and bearer
# tokens for the demo/test clients, and the token file the services read. Everything is
# owner-only (0700 folder, 0600 files). Production uses its own CA (cert-manager) and secrets.
#   var/credentials/ca.crt                     the CA every server and client trusts
#   var/credentials/<name>.crt, <name>.key     mTLS identity: CN=<name>, OU=<role>…
#   var/credentials/tokens/<name>.token        a bearer token of the client <name>
#   var/credentials/tokens.yaml                sha256(token) → client id + roles (DOPS_SECURITY_TOKENS_FILE)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${DOPS_CREDENTIALS_DIR:-$PWD/var/credentials}"
umask 077
mkdir -p "$DIR/tokens"
chmod 700 "$DIR" "$DIR/tokens"

# Services: internal role (service-to-service methods). Clients: name → roles.
SERVICES=(device memory model inference processing postprocessing)
declare -A CLIENTS=([demo]=client [alice]=client [bob]=client [ops]="operator client" [nobody]="")

if [ -f "$DIR/ca.crt" ] && openssl x509 -checkend 86400 -noout -in "$DIR/ca.crt" >/dev/null 2>&1 \
  && [ -f "$DIR/tokens.yaml" ] && [ -f "$DIR/ops.crt" ]; then
  exit 0
fi
rm -f "$DIR"/*.crt "$DIR"/*.key "$DIR"/*.srl "$DIR"/tokens/*.token "$DIR/tokens.yaml"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$DIR/ca.key"
openssl req -x509 -new -key "$DIR/ca.key" -sha256 -days 365 -subj "/O=dops/CN=dops development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$DIR/ca.crt" 2>/dev/null

# issue <name> "<roles>" [server]: a leaf certificate signed by the CA; servers get SANs for local use.
issue() {
  local name=$1 roles=$2 subj="/O=dops"
  for role in $roles; do subj="$subj/OU=$role"; done
  subj="$subj/CN=$name"
  key "$DIR/$name.key"
  openssl req -new -key "$DIR/$name.key" -subj "$subj" -out "$DIR/$name.csr" 2>/dev/null
  local ext="$DIR/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    echo "subjectAltName=DNS:localhost,DNS:$name,DNS:dops-$name,IP:127.0.0.1,IP:::1"
  } >"$ext"
  openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$DIR/$name.crt" 2>/dev/null
  rm -f "$DIR/$name.csr" "$ext"
}

for svc in "${SERVICES[@]}"; do issue "$svc" internal; done
{
  echo "# sha256 of each bearer token → the client it authenticates and its roles (generated)"
  echo "tokens:"
  for name in "${!CLIENTS[@]}"; do
    issue "$name" "${CLIENTS[$name]}"
    token=$(openssl rand -hex 32)
    printf '%s' "$token" >"$DIR/tokens/$name.token"
    sha=$(printf '%s' "$token" | openssl dgst -sha256 -r | cut -d' ' -f1)
    roles=$(echo "${CLIENTS[$name]}" | sed 's/ /, /g')
    echo "  - sha256: $sha"
    echo "    clientId: $name"
    echo "    roles: [$roles]"
  done
} >"$DIR/tokens.yaml"
rm -f "$DIR"/*.srl
chmod 600 "$DIR"/* "$DIR"/tokens/* 2>/dev/null || true
chmod 700 "$DIR/tokens"
echo "development credentials written to $DIR"
