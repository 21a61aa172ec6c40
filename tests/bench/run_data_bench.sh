#!/usr/bin/env bash
# The data-step benchmark of docs/performance.md, on generated MedReason-shaped rows with the real
# Llama 3.1 tokenizer. On the same rows, in one run:
#
#   tunec fast        `tunec run --until parts` (release build), texts encoded by tunec's byte-level
#                     BPE engine (the default for Llama 3)
#   tunec tokenizers  the same with TUNEC_TOKENIZER=tokenizers: every text through the tokenizers crate
#   seed num_proc=N   the seed's Python: datasets + apply_chat_template + the tokenizer
#                     (tests/bench/seed_prepare.py; N from SEED_NUM_PROC)
#   raw encode_batch  tokenizers' Python encode_batch on the rendered texts, timed region only
#                     (tests/bench/raw_tokenize.py)
#
# Each gets its wall time, CPU seconds (user + system, whole process tree), peak RSS of the largest
# process (/usr/bin/time -v) and peak PSS of the process tree (tests/bench/tree_mem.py), and the load
# average before and after it. The machine may be shared: the implementations run one after another
# in rounds (REPEAT rounds, alternating), and the summary compares tokens per CPU-second, which the
# contention disturbs least. Both tunec runs must write the same files (their SHA-256s are compared).
#
#   tests/bench/run_data_bench.sh [ROWS...]          (default: 10000 1000000)
#
# Environment: WORK (default /tmp/dbench; needs about 3 GB per million rows for the input, and tunec's
# outputs, 8.5 GB per million rows, are removed after each run), VENV (default /tmp/bench-venv,
# created when missing), TUNEC_FIXTURES (default ~/.cache/tunec/fixtures, filled by .ci/fixtures.sh),
# SEED_NUM_PROC (default "2": the seed with num_proc=2; "2 1" adds a run without num_proc; empty
# skips the seed), RAW (default 1; 0 skips raw encode_batch), REPEAT (rounds, default 1), TUNEC_BIN
# (a tunec to measure instead of building one), CARGO_TARGET_DIR (where the release build goes).
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/dbench}
VENV=${VENV:-/tmp/bench-venv}
FIX=${TUNEC_FIXTURES:-$HOME/.cache/tunec/fixtures}
SEED_NUM_PROC=${SEED_NUM_PROC-2}
RAW=${RAW:-1}
REPEAT=${REPEAT:-1}
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(10000 1000000)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
mkdir -p "$WORK"
RESULTS="$WORK/results.tsv"
rm -f "$WORK"/raw-*.jsonl
printf 'rows\timpl\twall_s\tcpu_s\tload_before\tload_after\tpeak_rss_kib\ttree_pss_kib\ttokens\n' >"$RESULTS"

{
  echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "started: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$WORK/machine.txt" >&2

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  # jinja2 is what apply_chat_template renders with; transformers does not pull it in on its own.
  "$VENV/bin/pip" install -q transformers==4.56.2 datasets==5.0.1 tokenizers==0.22.2 jinja2==3.1.6
fi

# A copy of the binary, so that a rebuild in the checkout does not change it mid-run.
if [ -n "${TUNEC_BIN:-}" ]; then
  cp "$TUNEC_BIN" "$WORK/tunec"
else
  (cd "$ROOT" && cargo build --release --locked -p tunec-runtime --bin tunec)
  cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/tunec" "$WORK/tunec"
fi

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

# measure ROWS IMPL CMD...: one line of results.tsv without the token count, from /usr/bin/time -v
# and tree_mem.py.
measure() {
  local rows=$1 impl=$2 log="$WORK/time-$1-${2// /_}.log"
  shift 2
  sync
  local wall rss pss cpu before after
  before=$(cut -d' ' -f1 /proc/loadavg)
  if ! /usr/bin/time -v python3 "$ROOT/tests/bench/tree_mem.py" "$log.mem" "$@" >"$log.out" 2>"$log"; then
    echo "failed: $* (see $log, $log.out)" >&2
    tail -20 "$log.out" "$log" >&2
    exit 1
  fi
  after=$(cut -d' ' -f1 /proc/loadavg)
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$log")
  pss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["peak_tree_pss_kib"])' "$log.mem")
  echo "$rows $impl: ${wall} s wall, ${cpu} s CPU (load $before before, $after after), peak RSS ${rss} KiB (largest process), peak PSS ${pss} KiB (process tree)" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$rows" "$impl" "$wall" "$cpu" "$before" "$after" "$rss" "$pss"
}

# tunec_run ROWS ENGINE: tunec on the rows with TUNEC_TOKENIZER=ENGINE; prints the digests of its
# split files, then removes them.
tunec_run() {
  local n=$1 engine=$2 name
  name=$([ "$engine" = auto ] && echo "tunec fast" || echo "tunec tokenizers")
  rm -rf "$PIPE/.tunec"
  export TUNEC_TOKENIZER=$engine
  line=$(measure "$n" "$name" "$WORK/tunec" run "$PIPE/p.tune" --until parts)
  unset TUNEC_TOKENIZER
  tokens=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); print(round(p["mean_tokens"]*p["rows"]))' \
    "$PIPE/.tunec/p/profiles/convo.json")
  printf '%s\t%s\n' "$line" "$tokens" >>"$RESULTS"
  grep -h "tokenizer:" "$WORK/time-$n-${name// /_}.log.out" >&2 || true
  (cd "$PIPE/.tunec/p/data" && find . -name '*.jsonl' -o -name '*.parquet' | sort | xargs sha256sum) \
    >"$WORK/digests-$n-$engine.txt"
  rm -rf "$PIPE/.tunec"
}

for n in "${SIZES[@]}"; do
  in="$WORK/rows$n.jsonl"
  [ -f "$in" ] || python3 "$ROOT/tests/bench/gen_medreason.py" "$n" "$in"
  ln -sf "$in" "$PIPE/rows.jsonl"
  for round in $(seq "$REPEAT"); do
    echo "== $n rows, round $round" >&2
    tunec_run "$n" auto
    tunec_run "$n" tokenizers
    if ! cmp -s "$WORK/digests-$n-auto.txt" "$WORK/digests-$n-tokenizers.txt"; then
      echo "the two tokenizer engines wrote different files:" >&2
      diff "$WORK/digests-$n-auto.txt" "$WORK/digests-$n-tokenizers.txt" >&2
      exit 1
    fi
    echo "$n rows: both engines wrote the same $(wc -l <"$WORK/digests-$n-auto.txt") files" >&2

    for np in $SEED_NUM_PROC; do
      line=$(measure "$n" "seed num_proc=$np" "$VENV/bin/python" "$ROOT/tests/bench/seed_prepare.py" "$in" \
        "$WORK/seed-out" --num-proc "$np")
      stats=$(tail -1 "$WORK/time-$n-seed_num_proc=$np.log.out")
      printf '%s\t%s\n' "$line" "$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')" >>"$RESULTS"
      rm -rf "$WORK/seed-out"
    done

    # Raw tokenization alone: its CPU figure is the encode calls' (the timed region), not the
    # process's, which also renders every text and holds them all in memory.
    if [ "$RAW" != 0 ]; then
      line=$(measure "$n" "raw encode_batch" "$VENV/bin/python" "$ROOT/tests/bench/raw_tokenize.py" "$in")
      stats=$(tail -1 "$WORK/time-$n-raw_encode_batch.log.out")
      # One line per round, in order: the log above is overwritten by the next round.
      echo "$stats" >>"$WORK/raw-$n.jsonl"
      printf '%s\t%s\n' "$line" "$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')" >>"$RESULTS"
      echo "$stats" >&2
    fi
  done
done

echo "finished: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$WORK/machine.txt" >&2
python3 "$ROOT/tests/bench/summarize.py" "$RESULTS" "$WORK"
