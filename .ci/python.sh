#!/usr/bin/env bash
# Tests of the Python entry scripts (stdlib/python): a cached virtualenv, then pytest.
#
# The virtualenv holds torch==2.8.0 (the Hugging Face training image's PyTorch), the container-side pins of
# stdlib/python/requirements.txt and the test-only pins of tests/python/requirements-test.txt, all resolved
# under tests/python/constraints.txt so that a fresh machine gets exactly the versions the tests were run with.
# It lives at ${TUNEC_VENV:-$HOME/.cache/tunec/venv-<hash>}, where <hash> is the first 12 hex digits of the
# sha256 of those files plus the torch and Python versions: changing a pin makes a new venv, an unchanged one
# is reused without touching the network. PyPI's Linux torch wheel pulls the CUDA runtime wheels (several GB);
# pip's own cache (~/.cache/pip) keeps a rebuild fast.
#
# Exit status: pytest's, except that "no tests collected" (5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.8.0
PYTHON="${TUNEC_PYTHON:-$(command -v python3.11 || command -v python3)}"
REQS=(stdlib/python/requirements.txt tests/python/requirements-test.txt)
CONSTRAINTS=tests/python/constraints.txt

py_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
hash="$( { cat "${REQS[@]}" "$CONSTRAINTS"; echo "torch==$TORCH_VERSION python$py_version"; } | sha256sum | cut -c1-12)"
VENV="${TUNEC_VENV:-$HOME/.cache/tunec/venv-$hash}"
STAMP="$VENV/.tunec-ready-$hash"

if [[ -f "$STAMP" ]]; then
  echo "== python venv: $VENV (cached)"
else
  echo "== python venv: $VENV (installing torch==$TORCH_VERSION and the pinned requirements)"
  start=$SECONDS
  mkdir -p "$(dirname "$VENV")"
  # Re-running after an interrupted install picks up where pip stopped; the stamp is written last.
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --no-input --upgrade pip==25.2
  "$VENV/bin/python" -m pip install --quiet --no-input --progress-bar off \
    "torch==$TORCH_VERSION" -r "${REQS[0]}" -r "${REQS[1]}" -c "$CONSTRAINTS"
  "$VENV/bin/python" -m pip check
  touch "$STAMP"
  echo "== python venv ready in $((SECONDS - start)) s"
fi

# Nothing may reach a model or dataset hub; no bytecode or pytest cache is written into the clone.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM=false PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0

echo "== python lint"
RUFF=(--line-length 120 --config "lint.isort.known-first-party=['tunec_entry','tinyllm','conftest']")
"$VENV/bin/ruff" check --no-cache "${RUFF[@]}" --select F,E,W,B,UP,I,N,RUF --ignore RUF001,RUF002,RUF003 stdlib/python tests/python
"$VENV/bin/ruff" format --check --no-cache "${RUFF[@]}" stdlib/python tests/python

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
