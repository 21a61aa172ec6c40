# A local moto server (the AWS API, for S3 and moto's SageMaker) for the tests, sourced by .ci/run.
#
#   source .ci/venv.sh && tunec_venv     # moto[server] is pinned in tests/python/requirements-test.txt
#   source .ci/moto.sh && tunec_moto_start
#   trap tunec_moto_stop EXIT
#
# tunec_moto_start starts "$VENV/bin/moto_server" on 127.0.0.1 on a free port, waits until it answers, and exports
# TUNEC_TEST_MOTO_URL=http://127.0.0.1:<port>. A TUNEC_TEST_MOTO_URL that already answers is kept as it is (and
# tunec_moto_stop then leaves that server alone), so a developer can run one server for many test runs. The
# server's log is $TUNEC_MOTO_LOG. tunec_moto_stop stops the server this shell started. Needs VENV (tunec_venv).

tunec_moto_answers() {
  # moto's own management API; any HTTP answer means the server is up.
  "$VENV/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2).read()
EOF
}

tunec_moto_start() {
  TUNEC_MOTO_PID=""
  if [[ -n "${TUNEC_TEST_MOTO_URL:-}" ]] && tunec_moto_answers "$TUNEC_TEST_MOTO_URL"; then
    echo "== moto: using the server at $TUNEC_TEST_MOTO_URL"
    export TUNEC_TEST_MOTO_URL
    return 0
  fi
  TUNEC_MOTO_LOG="$(mktemp "${TMPDIR:-/tmp}/tunec-moto.XXXXXX.log")"
  local attempt port
  for attempt in 1 2 3; do
    # A port the kernel says is free now; another process could take it before moto binds, hence the retries.
    port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >>"$TUNEC_MOTO_LOG" 2>&1 &
    TUNEC_MOTO_PID=$!
    local waited
    for waited in $(seq 1 100); do
      if tunec_moto_answers "http://127.0.0.1:$port"; then
        export TUNEC_TEST_MOTO_URL="http://127.0.0.1:$port"
        echo "== moto: $TUNEC_TEST_MOTO_URL (pid $TUNEC_MOTO_PID, log $TUNEC_MOTO_LOG, up after ${waited} tries)"
        return 0
      fi
      kill -0 "$TUNEC_MOTO_PID" 2>/dev/null || break
      sleep 0.1
    done
    echo "== moto: attempt $attempt on port $port failed" >&2
    kill "$TUNEC_MOTO_PID" 2>/dev/null || true
    wait "$TUNEC_MOTO_PID" 2>/dev/null || true
    TUNEC_MOTO_PID=""
  done
  echo "moto server did not start; its log, $TUNEC_MOTO_LOG:" >&2
  tail -n 20 "$TUNEC_MOTO_LOG" >&2
  return 1
}

tunec_moto_stop() {
  if [[ -n "${TUNEC_MOTO_PID:-}" ]]; then
    kill "$TUNEC_MOTO_PID" 2>/dev/null || true
    wait "$TUNEC_MOTO_PID" 2>/dev/null || true
    echo "== moto: stopped (pid $TUNEC_MOTO_PID)"
    TUNEC_MOTO_PID=""
  fi
}
