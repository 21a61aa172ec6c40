#!/usr/bin/env bash
# Tests of the Python entry scripts (stdlib/python): a cached virtualenv, then pytest.
#
# The virtualenv is described in .ci/venv.sh.
#
# Exit status: pytest's, except that "no tests collected" (5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/venv.sh
tunec_venv

# Nothing may reach a model or dataset hub; no bytecode or pytest cache is written into the clone.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM=false PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0

echo "== python lint"
RUFF=(--line-length 120 --config "lint.isort.known-first-party=['tunec_entry','tinyllm','conftest','tunec']")
"$VENV/bin/ruff" check --no-cache "${RUFF[@]}" --select F,E,W,B,UP,I,N,RUF --ignore RUF001,RUF002,RUF003 stdlib/python tests/python tests/aws examples python tests/wheel
"$VENV/bin/ruff" format --check --no-cache "${RUFF[@]}" stdlib/python tests/python tests/aws examples python tests/wheel

echo "== python tests"
"$VENV/bin/python" -c 'import torch, transformers, peft, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__, "accelerate", accelerate.__version__)'
set +e
"$VENV/bin/python" -m pytest tests/python -q -p no:cacheprovider "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "python tests: no tests collected" >&2
  exit 1
fi
exit $rc
