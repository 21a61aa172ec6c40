#!/usr/bin/env bash
# The wheel, built and then installed as users install it: maturin builds dist/tunec-*.whl from this
# checkout, a fresh virtualenv gets it with pip (and the tests' pinned pytest and mypy), and from
# there, with no Rust toolchain on the PATH, `tunec check` and `tunec plan` run on the reference
# pipeline and tests/wheel runs the Python module on every example and fixture.
#
# TUNEC_WHEEL_PROFILE picks the cargo profile of the binary: `release` (the default: the wheel to
# hand out; a release build from nothing takes 10 to 18 minutes on 2 cores) or `dev`, which CI uses
# because `cargo test` has just built every dependency in that profile, so the wheel costs no second
# build of them. The packaging and the module are the same in both; `tunec --version` says
# `debug build` for the second.
#
# Outputs: $CARGO_TARGET_DIR/dist/tunec-<version>-<tags>.whl and the test virtualenv,
# $CARGO_TARGET_DIR/wheel-venv. maturin itself lives in a cached virtualenv,
# $HOME/.cache/tunec/venv-build-<hash of its pin>.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tunec/target}"
PROFILE="${TUNEC_WHEEL_PROFILE:-release}"
PYTHON="${TUNEC_PYTHON:-$(command -v python3.11 || command -v python3)}"
DIST="$CARGO_TARGET_DIR/dist"
VENV="$CARGO_TARGET_DIR/wheel-venv"
start=$SECONDS

echo "== wheel: maturin"
BUILD_REQS=python/requirements-build.txt
hash="$( { cat "$BUILD_REQS"; "$PYTHON" --version; } | sha256sum | cut -c1-12)"
TOOLS="$HOME/.cache/tunec/venv-build-$hash"
if [[ ! -f "$TOOLS/.tunec-ready" ]]; then
  "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install --quiet --no-input --progress-bar off -r "$BUILD_REQS"
  touch "$TOOLS/.tunec-ready"
fi
"$TOOLS/bin/maturin" --version

echo "== wheel: build ($PROFILE profile)"
rm -f "$DIST"/tunec-*.whl
# maturin strips through rustc, so a stripped dev wheel would compile and link the binary again (and
# `cargo build` would then do it once more); the dev wheel keeps its symbols instead.
strip=true
[[ "$PROFILE" == dev ]] && strip=false
"$TOOLS/bin/maturin" build --profile "$PROFILE" --strip "$strip" --out "$DIST"
wheels=("$DIST"/tunec-*.whl)
[[ ${#wheels[@]} -eq 1 && -f "${wheels[0]}" ]] || { echo "expected one wheel in $DIST" >&2; exit 1; }
wheel="${wheels[0]}"
ls -l "$wheel"
echo "== wheel: built in $((SECONDS - start)) s"

echo "== wheel: install into a fresh virtualenv"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-input --progress-bar off "$wheel" -r tests/wheel/requirements.txt

# Only the virtualenv and the system's folders: no cargo, no rustc, no target/ on the PATH.
clean_path="$VENV/bin:/usr/local/bin:/usr/bin:/bin"
for tool in cargo rustc; do
  if found="$(PATH="$clean_path" command -v "$tool")"; then
    echo "$tool is on the clean PATH ($found); the wheel's tests must run without it" >&2
    exit 1
  fi
done
run() { env -u VIRTUAL_ENV -u TUNEC_BIN PATH="$clean_path" "$@"; }

echo "== wheel: tunec from the PATH"
run tunec --version
run tunec check examples/medreason/medreason.tune
run tunec plan examples/medreason/medreason.tune > /dev/null

echo "== wheel: the Python module"
TUNEC_EXPECT_COMMIT="$(git rev-parse HEAD)" TUNEC_WHEEL_PROFILE="$PROFILE" PYTHONDONTWRITEBYTECODE=1 \
  run python -m pytest tests/wheel -q -p no:cacheprovider
echo "== wheel: done in $((SECONDS - start)) s"
