#!/bin/sh
# Refresh the vendored LiveKit browser client the console imports.
#
#   scripts/vendor-livekit.sh 2.23.0
#
# Downloads the npm package livekit-client@VERSION (npm pack: the published tarball, no install
# scripts run), copies its single-file ES module build dist/livekit-client.esm.mjs and its LICENSE
# into the console's static/vendor/livekit-client/, and writes VERSION. The module imports nothing
# else (the script refuses a build with import statements), so the browser loads it as it is.
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 VERSION   (e.g. $0 2.23.0)" >&2
    exit 2
fi
version=$1
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/src/avatarstack/adapters/http/console/static/vendor/livekit-client"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "livekit-client@$version" >/dev/null)
tar -xzf "$work"/livekit-client-*.tgz -C "$work"
module="$work/package/dist/livekit-client.esm.mjs"
if [ ! -f "$module" ]; then
    echo "livekit-client@$version has no dist/livekit-client.esm.mjs; look at its dist/ folder" >&2
    exit 1
fi
if grep -Eq '^[[:space:]]*import[[:space:]].*from[[:space:]]|^import[[:space:]]*["'\'']' "$module"; then
    echo "livekit-client@$version's ES module imports other modules; a browser cannot load it as is" >&2
    exit 1
fi
packaged=$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$work/package/package.json" | head -n 1)

mkdir -p "$dest"
cp "$module" "$dest/livekit-client.esm.mjs"
cp "$work/package/LICENSE" "$dest/LICENSE"
printf '%s\n' "$packaged" >"$dest/VERSION"
echo "vendored livekit-client $packaged into ${dest#"$root"/}"
