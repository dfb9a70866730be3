#!/usr/bin/env bash
# The local Redis's credentials, made once: a random password for the ACL user `dops` in
# <dir>/redis.password and the ACL file <dir>/redis.acl that redis-server loads (--aclfile; it
# holds the password's SHA-256, not the password, and locks the default user). Both 0600 in
# a 0700 folder. Idempotent: an existing password is kept; the ACL file is rewritten from it, so
# a change of the rules takes effect at Redis's next start.
# Usage: tools/redis-credentials.sh [dir]    dir defaults to var/credentials (tools/up.sh);
#        compose reads deploy/secrets/redis.password: tools/redis-credentials.sh deploy/secrets
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077
DIR=${1:-var/credentials}
# The dops user's rules, the same in every configuration: REDIS_ACL_RULES in
# libs/platform/queue/src/connection.ts (its redis-protection test checks this file).
RULES='~* &* +@all -@dangerous +info +client|list'

mkdir -p "$DIR"
chmod 700 "$DIR"
pw="$DIR/redis.password"
if [ ! -s "$pw" ]; then
  tmp=$(mktemp "$DIR/.redis.password.XXXXXX")
  # 32 random bytes as hex: nothing to escape in a URL, an ACL file or a shell.
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$tmp"
  mv "$tmp" "$pw"
fi
chmod 600 "$pw"

hash=$(tr -d '\r\n' < "$pw" | sha256sum | cut -d' ' -f1)
# The default user is locked behind a random hash whose password nobody has, not turned off:
# Redis replays the AOF as the default user and, with it off, drops every MULTI/EXEC and script
# in it at restart (redis/redis#14541) — all of BullMQ's writes.
locked=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
tmp=$(mktemp "$DIR/.redis.acl.XXXXXX")
printf 'user default on #%s %s\nuser dops on #%s %s\n' "$locked" "$RULES" "$hash" "$RULES" > "$tmp"
mv "$tmp" "$DIR/redis.acl"
chmod 600 "$DIR/redis.acl"
