# The Python virtualenv the tests use, sourced by .ci/python.sh and .ci/run: `tunec_venv` creates or
# reuses it and sets VENV.
#
# The virtualenv holds torch==2.8.0 (the Hugging Face training image's PyTorch), the container-side pins of
# stdlib/python/requirements.txt and the test-only pins of tests/python/requirements-test.txt, all resolved
# under tests/python/constraints.txt so that a fresh machine gets exactly the versions the tests were run with.
# It lives at ${TUNEC_VENV:-$HOME/.cache/tunec/venv-<hash>}, where <hash> is the first 12 hex digits of the
# sha256 of those files plus the torch and Python versions: changing a pin makes a new venv, an unchanged one
# is reused without touching the network. PyPI's Linux torch wheel pulls the CUDA runtime wheels (several GB);
# pip's own cache (~/.cache/pip) keeps a rebuild fast. Paths are relative to the repository root.

tunec_venv() {
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
}
