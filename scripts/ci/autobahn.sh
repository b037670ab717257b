#!/usr/bin/env bash
# Autobahn protocol conformance: runs the Autobahn test cases of categories 1-7 and 10 with
# kosoku (PyPI, pinned with hashes in conformance/requirements.txt) against
#   1. a tokio-tungstenite echo server alone (conformance/echo, set up like mock::FakeUpstream
#      with FakeBehavior::Echo but independent of the guestgate crate),
#   2. `guestgate serve` relaying to that same echo server,
#   3. `guestgate serve` relaying to a second echo server in --fail-with-close mode (it answers
#      invalid UTF-8 with close 1007 and protocol errors with 1002, RFC 6455 7.1.7, where the
#      default echo drops TCP),
# and fails when any case of run 2 does worse than conformance/expected.json or any case of
# run 3 does worse than conformance/expected-rfc-close.json. Ends with two lines
# `autobahn: cases through guestgate...: N passed, M failed; against ...: W worse, B better`.
# Reports: target/autobahn/reports/{direct,guestgate,guestgate-rfc-close}/.
#
# Usage: bash scripts/ci/autobahn.sh            check against the expected files
#        bash scripts/ci/autobahn.sh --record   rewrite both expected files from this run
#        bash scripts/ci/autobahn.sh --table    also print the README summary tables
#        bash scripts/ci/autobahn.sh --direct-rfc-close   also run the cases against the
#                                               --fail-with-close echo alone (not checked)
# AUTOBAHN_PROFILE=dev tests a debug build instead of the release build (reuses what
# `cargo test` compiled; same verdicts). Needs python3 (>= 3.10) with pip; installs kosoku into
# target/autobahn/py (no venv, no root).
set -euo pipefail
cd "$(dirname "$0")/../.."

mode="check"
table=0
direct_rfc=0
for arg in "$@"; do
  case "$arg" in
    --record) mode="record" ;;
    --table) table=1 ;;
    --direct-rfc-close) direct_rfc=1 ;;
    *) echo "usage: $0 [--record] [--table] [--direct-rfc-close]" >&2; exit 2 ;;
  esac
done

out=target/autobahn
py_dir="$out/py"
kosoku_version=0.1.0
mkdir -p "$out"
started=$SECONDS

# --- kosoku -----------------------------------------------------------------------------------
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "autobahn: needs python3 >= 3.10 (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -d "$py_dir/kosoku-$kosoku_version.dist-info" ]; then
  echo "installing kosoku $kosoku_version into $py_dir"
  rm -rf "$py_dir"
  # --target keeps it out of the system (and out of PEP 668's way) without needing venv.
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --no-deps --only-binary=:all: --require-hashes --target "$py_dir" \
    -r conformance/requirements.txt
fi
export PYTHONPATH="$PWD/$py_dir${PYTHONPATH:+:$PYTHONPATH}"
"$python" -c 'import kosoku' # fail early on a broken install

# --- build ------------------------------------------------------------------------------------
profile=${AUTOBAHN_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case "$profile" in
  release) bin=$target_dir/release ;;
  dev) bin=$target_dir/debug ;;
  *) echo "autobahn: AUTOBAHN_PROFILE must be release or dev" >&2; exit 2 ;;
esac
echo "building guestgate and the echo upstream ($profile)"
cargo build --profile "$profile" --quiet --bin guestgate
# The echo crate is its own workspace and does not depend on guestgate; built into the main
# target directory it shares compiled dependencies and is rebuilt only when it changes.
(cd conformance/echo && CARGO_TARGET_DIR="$target_dir" cargo build --profile "$profile" --quiet)
built=$SECONDS
echo "built in $((built - started)) s"

# --- processes --------------------------------------------------------------------------------
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Waits until a TCP port accepts connections (the process must still be running).
wait_port() {
  local port=$1 pid=$2 what=$3
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "autobahn: $what exited during start-up" >&2
      return 1
    fi
    if "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" \
      2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "autobahn: $what did not start listening on $port" >&2
  return 1
}

# start_echo NAME [FLAGS]: sets echo_port; start_guestgate NAME UPSTREAM_PORT: sets gg_port.
start_echo() {
  local name=$1
  shift
  echo_port=$(free_port)
  "$bin/guestgate-echo" "$@" "127.0.0.1:$echo_port" >"$out/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$echo_port" "${pids[-1]}" "$name upstream" || { cat "$out/$name.log" >&2; exit 1; }
}
start_guestgate() {
  local name=$1 upstream_port=$2 admin_port
  gg_port=$(free_port)
  admin_port=$(free_port)
  "$bin/guestgate" serve --upstream "ws://127.0.0.1:$upstream_port/" \
    --listen "127.0.0.1:$gg_port" --admin-listen "127.0.0.1:$admin_port" \
    >"$out/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$gg_port" "${pids[-1]}" "$name" || { cat "$out/$name.log" >&2; exit 1; }
}

start_echo echo
plain_echo_port=$echo_port
start_guestgate guestgate "$plain_echo_port"
plain_gg_port=$gg_port
start_echo echo-rfc-close --fail-with-close
rfc_echo_port=$echo_port
start_guestgate guestgate-rfc-close "$rfc_echo_port"
rfc_gg_port=$gg_port

# --- runs -------------------------------------------------------------------------------------
run_cases() {
  local name=$1 url=$2
  rm -rf "$out/reports/$name"
  mkdir -p "$out/reports/$name"
  timeout 300 "$python" conformance/autobahn.py run "$url" "$out/results-$name.json" \
    --reports "$out/reports/$name"
}
runs=3
echo "Autobahn 1-7, 10 against the echo alone"
run_cases direct "ws://127.0.0.1:$plain_echo_port/"
if [ "$direct_rfc" = 1 ]; then
  echo "Autobahn 1-7, 10 against the --fail-with-close echo alone"
  run_cases direct-rfc-close "ws://127.0.0.1:$rfc_echo_port/"
  runs=4
fi
echo "Autobahn 1-7, 10 through guestgate"
run_cases guestgate "ws://127.0.0.1:$plain_gg_port/"
echo "Autobahn 1-7, 10 through guestgate to the --fail-with-close echo"
run_cases guestgate-rfc-close "ws://127.0.0.1:$rfc_gg_port/"

rfc_upstream="the echo upstream in --fail-with-close mode (close 1007 on invalid UTF-8, 1002 on"
rfc_upstream+=" a protocol error)"
# Run 3 is compared with the --fail-with-close echo alone when that ran, else with run 1.
rfc_direct=("$out/results-direct.json" "echo alone")
if [ "$direct_rfc" = 1 ]; then
  rfc_direct=("$out/results-direct-rfc-close.json" "--fail-with-close echo alone")
fi
status=0
if [ "$mode" = record ]; then
  "$python" conformance/autobahn.py record "$out/results-guestgate.json" \
    --expected conformance/expected.json
  "$python" conformance/autobahn.py record "$out/results-guestgate-rfc-close.json" \
    --expected conformance/expected-rfc-close.json --upstream "$rfc_upstream"
else
  # Both checks run (and print) even when the first fails.
  "$python" conformance/autobahn.py check "$out/results-guestgate.json" \
    --expected conformance/expected.json --direct "$out/results-direct.json" || status=1
  "$python" conformance/autobahn.py check "$out/results-guestgate-rfc-close.json" \
    --expected conformance/expected-rfc-close.json \
    --direct "${rfc_direct[0]}" --direct-label "${rfc_direct[1]}" \
    --label "cases through guestgate to the --fail-with-close echo" || status=1
fi
if [ "$table" = 1 ]; then
  echo "through guestgate to the echo:"
  "$python" conformance/autobahn.py table "$out/results-guestgate.json" \
    --direct "$out/results-direct.json"
  echo "through guestgate to the --fail-with-close echo:"
  "$python" conformance/autobahn.py table "$out/results-guestgate-rfc-close.json" \
    --direct "${rfc_direct[0]}"
fi
echo "autobahn: took $((SECONDS - started)) s ($((SECONDS - built)) s for the $runs runs);" \
  "reports in $out/reports/"
exit "$status"
