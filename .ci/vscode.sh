#!/usr/bin/env bash
# The VS Code extension: its tests (the TextMate grammar run by vscode-textmate over every .tune file
# of the repository, and which tunec the extension starts), then the .vsix, packaged by @vscode/vsce
# and checked for the files VS Code needs. npm installs the pinned tools of package-lock.json.
#
# TUNEC_BIN: the tunec binary the grammar test asks where nodes are (default: the debug build).
# Output: $CARGO_TARGET_DIR/dist/tunec-<version>.vsix.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunec/target}"
export TUNEC_BIN="${TUNEC_BIN:-$CARGO_TARGET_DIR/debug/tunec}"
DIST="$CARGO_TARGET_DIR/dist"
start=$SECONDS

cd editors/vscode
echo "== vscode: npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "== vscode: tests"
node --test test/
echo "== vscode: package"
version="$(node -p 'require("./package.json").version')"
mkdir -p "$DIST"
vsix="$DIST/tunec-$version.vsix"
npx --no-install vsce package --allow-missing-repository --out "$vsix" < /dev/null
python3 - "$vsix" <<'PY'
import json, sys, zipfile

names = set(zipfile.ZipFile(sys.argv[1]).namelist())
manifest = json.loads(zipfile.ZipFile(sys.argv[1]).read("extension/package.json"))
contributes = manifest["contributes"]
needed = {
    "extension/" + manifest["main"].removeprefix("./"),
    "extension/binary.js",
    "extension/" + contributes["grammars"][0]["path"].removeprefix("./"),
    "extension/" + contributes["languages"][0]["configuration"].removeprefix("./"),
    "extension/readme.md",
    "extension/LICENSE.txt",
    "extension/node_modules/vscode-languageclient/package.json",
    "extension.vsixmanifest",
}
missing = sorted(needed - names)
assert not missing, f"the .vsix lacks {missing}"
stray = sorted(n for n in names if n.startswith(("extension/test/", "extension/node_modules/@vscode/vsce")))
assert not stray, f"the .vsix carries test or build files: {stray[:5]}"
print(f"{sys.argv[1]}: {len(names)} files, with {', '.join(sorted(needed))}")
PY
ls -l "$vsix"
echo "== vscode: done in $((SECONDS - start)) s"
