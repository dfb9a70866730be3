#!/usr/bin/env bash
# Installs ghz (the gRPC load-testing tool, github.com/bojand/ghz) from the Go module proxy into
# var/tools/bin (ignored), once: a second run finds it and returns at once. Prints its path.
# About 3 minutes on a fresh 2-core machine (module downloads and the build), seconds after that.
set -euo pipefail
cd "$(dirname "$0")/../.."
GHZ_VERSION=v0.120.0
BIN="$PWD/var/tools/bin"
# A go-installed ghz reports its version as "dev": a stamp beside it says which one was built.
if [ -x "$BIN/ghz" ] && [ "$(cat "$BIN/ghz.version" 2>/dev/null)" = "$GHZ_VERSION" ]; then
  echo "$BIN/ghz"; exit 0
fi
command -v go >/dev/null || { echo "ghz needs the Go toolchain (go) to build" >&2; exit 1; }
mkdir -p "$BIN"
GOBIN="$BIN" GOFLAGS=-buildvcs=false go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION" >&2
echo "$GHZ_VERSION" > "$BIN/ghz.version"
echo "$BIN/ghz"
