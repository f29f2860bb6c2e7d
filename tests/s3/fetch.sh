#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (the S3-compatible server the S3 backup tests run against) from
# the Go module proxy into a cache directory, once, and prints the binary's path.
#
# `go install module/weed@version` is refused for this module (its go.mod has `replace`
# directives), so the module's source is downloaded with `go mod download` and built as the
# main module. The cache is keyed by the version below; later runs reuse the binary.
# Needs Go (1.22+). Takes about 5 minutes on 2 cores.
#
# Env: FLEETSYNC_CACHE_DIR  where the binary goes (default ${XDG_CACHE_HOME:-~/.cache}/fleetsync)
set -euo pipefail

module=github.com/seaweedfs/seaweedfs
version=v0.0.0-20261109003541-7506e5f91cd6
command -v go >/dev/null || { echo "fetch.sh: go not found (needed to build SeaweedFS for the S3 tests)" >&2; exit 1; }
cache="${FLEETSYNC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetsync}"
dir="$cache/weed-$version"
if [[ ! -x "$dir/weed" ]]; then
    work=$(mktemp -d)
    trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
    export GOFLAGS=-mod=mod GOPATH="${GOPATH:-$(go env GOPATH)}"
    src=$(cd "$work" && go mod download -json "$module@$version" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d "$src" ]] || { echo "fetch.sh: go mod download $module@$version gave no source dir" >&2; exit 1; }
    cp -r "$src" "$work/src"
    chmod -R u+w "$work/src"
    (cd "$work/src" && go build -o "$work/weed" ./weed) >&2
    mkdir -p "$dir"
    mv "$work/weed" "$dir/weed.tmp"
    mv "$dir/weed.tmp" "$dir/weed"
fi
echo "$dir/weed"
