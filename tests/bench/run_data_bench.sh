#!/usr/bin/env bash
# The data-step benchmark of docs/performance.md: tunec's data step against the seed's Python
# (datasets + apply_chat_template + the tokenizer) and against raw tokenization alone, on generated
# MedReason-shaped rows, with wall time and peak RSS from /usr/bin/time -v (the largest single
# process) and the peak PSS of the whole process tree (tests/bench/tree_mem.py; datasets' workers).
#
#   tests/bench/run_data_bench.sh [ROWS...]          (default: 10000 200000)
#
# Environment: WORK (default /tmp/dbench), VENV (default /tmp/bench-venv, created when missing),
# TUNEC_FIXTURES (default ~/.cache/tunec/fixtures, filled by .ci/fixtures.sh), SEED_NUM_PROC
# (default "2 1": the seed's Python with num_proc=2 and without num_proc; empty skips the seed),
# BENCH_ROWS (rows for the `prepare` bench at the end; default the first size; 0 skips it),
# CARGO_TARGET_DIR (where the release binary is built; default target/).
#
# tunec is measured twice: `tunec run --until parts` on the same JSONL as the Python scripts (a
# local pipeline with the same chat settings; includes journaling and file digests), and the
# `prepare` bench (its own in-memory rows, shorter, ~517 tokens; one thread, then all).
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/dbench}
VENV=${VENV:-/tmp/bench-venv}
FIX=${TUNEC_FIXTURES:-$HOME/.cache/tunec/fixtures}
SEED_NUM_PROC=${SEED_NUM_PROC-"2 1"}
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(10000 200000)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
mkdir -p "$WORK"
RESULTS="$WORK/results.tsv"
printf 'rows\timpl\twall_s\tcpu_s\tload_before\tpeak_rss_kib\ttree_pss_kib\tmean_tokens\ttokens\n' >"$RESULTS"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  # jinja2 is what apply_chat_template renders with; transformers does not pull it in on its own.
  "$VENV/bin/pip" install -q transformers==4.56.2 datasets==5.0.1 tokenizers==0.22.2 jinja2==3.1.6
fi

# A copy of the release binary, so that a rebuild in the checkout does not change it mid-run.
(cd "$ROOT" && cargo build --release -p tunec-runtime --bin tunec)
cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/tunec" "$WORK/tunec"

# The local pipeline: same system prompt, template, date, seq_len as seed_prepare.py.
PIPE="$WORK/pipe"
mkdir -p "$PIPE/model"
cp "$FIX/llama3_1/tokenizer.json" "$FIX/llama3_1/tokenizer_config.json" "$PIPE/model/"
cp "$ROOT/tests/data/llama3_1_instruct.jinja" "$PIPE/model/chat_template.jinja"
sed -e 's/"vocab_size": 512/"vocab_size": 128256/' -e 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 131072/' "$ROOT/tests/cases/models/tiny/config.json" >"$PIPE/model/config.json"
cat >"$PIPE/p.tune" <<'EOF'
pipeline p {
  model llama = local_model("model") {
    pad_token = "<|finetune_right_pad_id|>"
  }
  dataset raw = file("rows.jsonl") {
    columns = { question: string, answer: string, reasoning: string }
  }
  chat convo = chat_template(raw, tokenizer = llama) {
    system = "You are a deep-thinking AI assistant.\n\nFor every user question, first write your thoughts and reasoning inside <think>...</think> tags, then provide your answer."
    user = "{question}"
    assistant = "<think>\n{reasoning}\n</think>\n\n{answer}"
    seq_len = 4096
    overflow = truncate
    date_string = "26 Jul 2024"
  }
  split parts = split(convo, train = 0.9, val = 0.05, test = 0.05, seed = 42)
}
EOF

# measure ROWS IMPL MEAN_TOKENS TOKENS CMD...: wall and peak RSS of CMD from /usr/bin/time -v.
measure() {
  local rows=$1 impl=$2 log="$WORK/time-$1-${2// /_}.log"
  shift 2
  sync
  local wall rss pss cpu load
  load=$(cut -d' ' -f1 /proc/loadavg)
  if ! /usr/bin/time -v python3 "$ROOT/tests/bench/tree_mem.py" "$log.mem" "$@" >"$log.out" 2>"$log"; then
    echo "failed: $* (see $log, $log.out)" >&2
    tail -20 "$log.out" "$log" >&2
    exit 1
  fi
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$log")
  pss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["peak_tree_pss_kib"])' "$log.mem")
  echo "$rows $impl: ${wall} s wall, ${cpu} s CPU (load before: $load), peak RSS ${rss} KiB (largest process), peak PSS ${pss} KiB (process tree)" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rows" "$impl" "$wall" "$cpu" "$load" "$rss" "$pss"
}

for n in "${SIZES[@]}"; do
  in="$WORK/rows$n.jsonl"
  [ -f "$in" ] || python3 "$ROOT/tests/bench/gen_medreason.py" "$n" "$in"

  # (a) tunec on the same rows.
  rm -rf "$PIPE/.tunec"
  ln -sf "$in" "$PIPE/rows.jsonl"
  line=$(measure "$n" "tunec run" "$WORK/tunec" run "$PIPE/p.tune" --until parts)
  mean=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(p["mean_tokens"], p["rows"])' \
    "$PIPE/.tunec/p/profiles/convo.json")
  printf '%s\t%s\t%s\n' "$line" "${mean% *}" "$(python3 -c "print(round(${mean% *}*${mean#* }))")" >>"$RESULTS"

  # (b) the seed's Python.
  for np in $SEED_NUM_PROC; do
    line=$(measure "$n" "seed num_proc=$np" "$VENV/bin/python" "$ROOT/tests/bench/seed_prepare.py" "$in" \
      "$WORK/seed-out" --num-proc "$np")
    stats=$(tail -1 "$WORK/time-$n-seed_num_proc=$np.log.out")
    printf '%s\t%s\t%s\n' "$line" "$(echo "$stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["mean_tokens"], d["tokens"], sep="\t")')" >>"$RESULTS"
    rm -rf "$WORK/seed-out"
  done

  # (c) raw tokenization alone (its wall and RSS include reading and rendering; its throughput does not).
  line=$(measure "$n" "raw encode_batch" "$VENV/bin/python" "$ROOT/tests/bench/raw_tokenize.py" "$in")
  stats=$(tail -1 "$WORK/time-$n-raw_encode_batch.log.out")
  printf '%s\t%s\t%s\n' "$line" "$(echo "$stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["mean_tokens"], d["tokens"], sep="\t")')" >>"$RESULTS"
  echo "$stats" >&2
done

# The prepare bench (its own rows), for the record.
BENCH_ROWS=${BENCH_ROWS:-${SIZES[0]}}
[ "$BENCH_ROWS" != 0 ] && (cd "$ROOT" && TUNEC_FIXTURES="$FIX" /usr/bin/time -v cargo bench -p tunec-runtime --bench prepare -- "$BENCH_ROWS") \
  >"$WORK/prepare-bench.out" 2>"$WORK/prepare-bench.log" || true
grep threads "$WORK/prepare-bench.out" >&2 || true

column -t -s $'\t' "$RESULTS"
