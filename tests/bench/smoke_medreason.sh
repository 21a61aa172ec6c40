#!/usr/bin/env bash
# The wall time of docs/performance.md's MedReason-shaped smoke run: `tunec run --smoke` of
# tests/data/smoke-medreason.tune.in (QLoRA + FSDP on one ml.p4d.24xlarge, merge, evaluate) over
# tests/data/medreason.jsonl and a local_model folder with Llama 3.1 8B Instruct's config.json and the
# real Llama 3.1 tokenizer, as tests/smoke.rs runs it, in a fresh folder each round (so the miniature is
# built and every node runs). Prints /usr/bin/time -v's wall time and peak RSS for each round.
#
#   tests/bench/smoke_medreason.sh [ROUNDS]          (default 1)
#
# Environment: TUNEC_BIN (default: the debug build under CARGO_TARGET_DIR, else target/),
# TUNEC_PYTHON (the entry scripts' Python; `source .ci/venv.sh && tunec_venv` gives $VENV/bin/python),
# TUNEC_FIXTURES (default ~/.cache/tunec/fixtures, filled by .ci/fixtures.sh), WORK (default
# /tmp/smoke-bench, removed at the end).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${1:-1}
TUNEC_BIN=${TUNEC_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/tunec}
FIXTURES=${TUNEC_FIXTURES:-$HOME/.cache/tunec/fixtures}
WORK=${WORK:-/tmp/smoke-bench}
: "${TUNEC_PYTHON:?set TUNEC_PYTHON to a Python with the entry scripts packages (source .ci/venv.sh && tunec_venv)}"

for round in $(seq "$ROUNDS"); do
  rm -rf "$WORK" && mkdir -p "$WORK/model"
  cp "$FIXTURES/llama3_1/tokenizer.json" "$FIXTURES/llama3_1/tokenizer_config.json" "$WORK/model/"
  cp "$ROOT/tests/data/llama3_1_8b_instruct_config.json" "$WORK/model/config.json"
  cp "$ROOT/tests/data/llama3_1_instruct.jinja" "$WORK/model/chat_template.jinja"
  cp "$ROOT/tests/data/medreason.jsonl" "$WORK/"
  cp "$ROOT/tests/data/smoke-medreason.tune.in" "$WORK/p.tune"
  echo "round $round: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  CUDA_VISIBLE_DEVICES= /usr/bin/time -v "$TUNEC_BIN" run --smoke "$WORK/p.tune" --progress plain \
    >"$WORK/out.txt" 2>"$WORK/time.txt" || { cat "$WORK/out.txt" "$WORK/time.txt"; exit 1; }
  grep -E "smoke run of .p.: passed" "$WORK/out.txt"
  grep -E "Elapsed \(wall clock\)|User time|System time|Maximum resident" "$WORK/time.txt"
done
rm -rf "$WORK"
