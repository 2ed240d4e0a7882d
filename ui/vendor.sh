#!/usr/bin/env bash
# Copies xterm.js's built files from its npm package into ui/vendor/, where the daemon
# embeds them (crates/hypernix-api/src/ui.rs). The copies are committed: building hypernix
# needs neither npm nor a network. Run again only to change the version below.
set -euo pipefail
VERSION=5.5.0 # @xterm/xterm
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --silent --no-audit --no-fund "@xterm/xterm@$VERSION")
# The source map is not shipped; drop its reference.
sed "/sourceMappingURL/d" "$tmp/node_modules/@xterm/xterm/lib/xterm.js" > "$here/vendor/xterm.js"
cp "$tmp/node_modules/@xterm/xterm/css/xterm.css" "$here/vendor/xterm.css"
cp "$tmp/node_modules/@xterm/xterm/LICENSE" "$here/vendor/xterm.LICENSE"
echo "ui/vendor: @xterm/xterm $VERSION"
