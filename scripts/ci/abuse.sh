#!/usr/bin/env bash
# Abuse suite: plays a hostile browser against a real `guestgate serve` process on loopback and
# asserts, from outside the process, that every attack costs a bounded amount:
#   - guestgate's peak RSS during the scenario (/proc/PID/status VmHWM, reset before each
#     scenario through /proc/PID/clear_refs) per hostile connection, and VmRSS after it;
#   - its open file descriptors (/proc/PID/fd), back near the baseline after each scenario;
#   - upstream work, counted by the fake upstream (sessions created, sockets still open), and
#     what the browser saw (close codes, timings), checked by guestgate-abuse itself.
# guestgate runs with a generated config: a Genesys-preset route (/chat) to guestgate-fake's
# fake Genesys, a plain route (/echo) to its echo and a plain route (/flood) to an upstream
# that floods. Ends with a summary table and `abuse: N passed, M failed` alone on a line.
#
# Usage: bash scripts/ci/abuse.sh [--only a,b,...] [--known-gaps a,b,...|--known-gaps '']
#   --only         run only these scenarios
#   --known-gaps   replace the KNOWN_GAPS list below ('' makes every scenario binding)
# ABUSE_PROFILE=dev tests a debug build (reuses what `cargo test` compiled; RSS figures are
# not comparable). Logs and per-scenario JSON: target/abuse/.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Scenarios whose bound is not in place yet (none today: every scenario is binding). A listed
# scenario's failure is a warning, not a failure, and a pass is reported so its line can go:
# one line each, the name first, with the bound it waits for.
KNOWN_GAPS=(
)
ALL_SCENARIOS=(huge over-limit fragments unfinished-fragments ping-flood message-flood
  reset-storm idle-flood slow-headers slow-frames slow-readers tickets)

only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=${2:-}; shift 2 || shift ;;
    --only=*) only=${1#--only=}; shift ;;
    --known-gaps) IFS=',' read -r -a KNOWN_GAPS <<<"${2:-}"; shift 2 || shift ;;
    --known-gaps=*) IFS=',' read -r -a KNOWN_GAPS <<<"${1#--known-gaps=}"; shift ;;
    *) echo "usage: $0 [--only a,b] [--known-gaps a,b]" >&2; exit 2 ;;
  esac
done
scenarios=("${ALL_SCENARIOS[@]}")
[ -n "$only" ] && IFS=',' read -r -a scenarios <<<"$only"

out=target/abuse
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.log
started=$SECONDS
python=${PYTHON:-python3}

# --- limits the suite relies on -----------------------------------------------------------------
ORIGIN="https://chat.abuse.test"
MAX_SETUPS=50             # routes.edge.max_concurrent_setups on /chat (explicit: the storm's bound)
HANDSHAKE_TIMEOUT=3       # server.handshake_timeout, seconds
MAX_CONNECTIONS=2000      # server.max_connections: the idle flood holds more than this
IDLE_SOCKETS=3000
WRITE_STALL=2             # /flood relay.write_stall_timeout and close_timeout, seconds
CLOSE_TIMEOUT=1
UPSTREAM_LATENCY_MS=1000  # the fake Genesys answers configureSession after this long
TICKET_TTL=6              # /chat resume ttl and max_lifetime, seconds
TICKET_MAX_LIFETIME=10
FRAGMENT_BOUND=10         # routes.relay.message_timeout's default: a fragmented message's bound, seconds
RATE_LIMIT_CODE=4420      # close code of the browser message rate limit (README close codes)
SLACK_KIB=1024            # allowance on every RSS bound for allocator noise
FD_SLACK=8                # fds above the baseline still counted as "back to baseline"

# ulimit: thousands of sockets on both ends of the idle flood.
hard=$(ulimit -Hn)
want=20000
if [ "$hard" != "unlimited" ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"
if [ "$(ulimit -n)" -lt $((IDLE_SOCKETS + 1000)) ]; then
  IDLE_SOCKETS=$(($(ulimit -n) - 1000))
  MAX_CONNECTIONS=$((IDLE_SOCKETS * 2 / 3))
  echo "abuse: ulimit -n is $(ulimit -n): the idle flood uses $IDLE_SOCKETS sockets"
fi

# --- build ----------------------------------------------------------------------------------------
profile=${ABUSE_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case "$profile" in
  release) bin=$target_dir/release ;;
  dev) bin=$target_dir/debug ;;
  *) echo "abuse: ABUSE_PROFILE must be release or dev" >&2; exit 2 ;;
esac
echo "building guestgate, guestgate-fake and guestgate-abuse ($profile)"
cargo build --profile "$profile" --quiet --bin guestgate --bin guestgate-fake --bin guestgate-abuse
echo "built in $((SECONDS - started)) s"

# --- processes ------------------------------------------------------------------------------------
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
json_get() { # json_get FILE KEY [DEFAULT]
  "$python" -c 'import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print(sys.argv[3] if v is None else v)' "$@" ""
}

# A real upstream takes time to answer configureSession; 1 s of it keeps the reset storm's
# set-ups in flight until the storm's resets arrive, so the cap, not timing, bounds them.
"$bin/guestgate-fake" --configure-delay-ms "$UPSTREAM_LATENCY_MS" >"$out/fake.out" 2>"$out/fake.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$out/fake.out" ] && break; sleep 0.1; done
[ -s "$out/fake.out" ] || { echo "abuse: guestgate-fake did not start" >&2; cat "$out/fake.log" >&2; exit 1; }
head -n1 "$out/fake.out" >"$out/fake.json"
genesys=$(json_get "$out/fake.json" genesys)
echo_up=$(json_get "$out/fake.json" echo)
flood_up=$(json_get "$out/fake.json" flood)
stats=$(json_get "$out/fake.json" stats)

key="$out/resume.key"
(umask 077 && head -c 32 /dev/urandom | base64 >"$key")

write_config() { # write_config WITH_MAX_LIFETIME
  local lifetime=""
  [ "$1" = 1 ] && lifetime="max_lifetime = \"${TICKET_MAX_LIFETIME}s\""
  cat >"$out/guestgate.toml" <<EOF
# Generated by scripts/ci/abuse.sh.
[server]
listen = "127.0.0.1:$gg_port"
admin_listen = "127.0.0.1:$admin_port"
max_connections = $MAX_CONNECTIONS
handshake_timeout = "${HANDSHAKE_TIMEOUT}s"
shutdown_grace = "2s"

[[routes]]
name = "chat"
path = "/chat"

[routes.edge]
allowed_origins = ["$ORIGIN"]
max_concurrent_setups = $MAX_SETUPS

[routes.genesys]
base_url = "ws://$genesys/v1"
deployment_id = "fake-deployment"
origin = "$ORIGIN"

[routes.resume]
keys = [{ file = "$PWD/$key" }]
ttl = "${TICKET_TTL}s"
$lifetime

[[routes]]
name = "echo"
path = "/echo"
upstream = "ws://$echo_up/"

[routes.edge]
allowed_origins = ["$ORIGIN"]

[[routes]]
name = "flood"
path = "/flood"
upstream = "ws://$flood_up/"

[routes.edge]
allowed_origins = ["$ORIGIN"]

[routes.relay]
write_stall_timeout = "${WRITE_STALL}s"
close_timeout = "${CLOSE_TIMEOUT}s"
EOF
}
# Ports are picked free and bound a moment later: another process may take one in between,
# so start-up is tried up to three times with fresh ports.
start_guestgate() {
  gg_port=$(free_port)
  admin_port=$(free_port)
  write_config 1
  if ! "$bin/guestgate" check --config "$out/guestgate.toml" >"$out/effective.toml" 2>"$out/check.log"; then
    # Until ticket max_lifetime is merged the key is unknown: run without it (tickets then
    # fails as a known gap).
    echo "abuse: guestgate does not know routes.resume.max_lifetime yet; running without it"
    write_config 0
    "$bin/guestgate" check --config "$out/guestgate.toml" >"$out/effective.toml"
  fi
  "$bin/guestgate" serve --config "$out/guestgate.toml" >"$out/guestgate.log" 2>&1 &
  gg_pid=$!
  pids+=("$gg_pid")
  for _ in $(seq 1 100); do
    kill -0 "$gg_pid" 2>/dev/null || return 1
    "$python" -c "import socket; socket.create_connection(('127.0.0.1', $gg_port), 0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
started_ok=0
for _ in 1 2 3; do
  if start_guestgate; then started_ok=1; break; fi
  kill "$gg_pid" 2>/dev/null || true
done
[ "$started_ok" = 1 ] || { echo "abuse: guestgate did not start" >&2; cat "$out/guestgate.log" >&2; exit 1; }
# The Genesys route's effective message limit: the largest hostile message the route allows.
read -r max_message buffer_bytes < <("$python" - "$out/effective.toml" <<'EOF'
import re, sys
# `guestgate check` explains each route after the effective config, with the limits in force
# (preset defaults included): take the /chat route's.
text = open(sys.argv[1]).read()
section = text[text.index('# route "chat"'):]
m = re.search(r"browser message (\d+) B, .* read buffer (\d+) B", section)
print(m.group(1), m.group(2))
EOF
)
echo "the /chat route allows messages of $max_message bytes; read buffers are $buffer_bytes bytes"
# 8 connections as in the issue, fewer when the limit is large (at most 256 MiB in flight).
huge_connections=$(( (256 << 20) / max_message ))
[ "$huge_connections" -gt 8 ] && huge_connections=8
[ "$huge_connections" -lt 1 ] && huge_connections=1

fds() { find "/proc/$gg_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
status_kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$gg_pid/status"; }
# Waits up to 15 s for the fd count to come back within FD_SLACK of the baseline; prints it.
settle_fds() {
  local n
  for _ in $(seq 1 150); do
    n=$(fds)
    [ "$n" -le $((fd_baseline + FD_SLACK)) ] && break
    sleep 0.1
  done
  echo "$n"
}
sleep 0.5
fd_baseline=$(fds)
echo "guestgate pid $gg_pid: $fd_baseline fds, $(status_kib VmRSS) KiB RSS at rest"

# --- scenarios ------------------------------------------------------------------------------------
# Per hostile connection RSS bound (KiB) for each scenario.
message_bound=$(( 2 * (max_message + buffer_bytes) / 1024 ))
# The fragments scenario sends at most 1 MiB (guestgate-abuse's cap): its bound follows.
fragmented=$(( max_message < (1 << 20) ? max_message : (1 << 20) ))
rss_bound_kib() {
  case "$1" in
    huge|over-limit|unfinished-fragments|ping-flood|message-flood) echo "$message_bound" ;;
    fragments) echo $(( 2 * (fragmented + buffer_bytes) / 1024 )) ;;
    reset-storm) echo 64 ;;
    idle-flood|slow-headers) echo 16 ;;
    # A whole relayed connection (both legs, the upgrade's transients) and no read buffer: a
    # trickled header is kept inline (14 bytes); a buffer pinned per connection would add up
    # to buffer_bytes. lease::tests asserts the buffer itself is given back.
    slow-frames) echo 20 ;;
    slow-readers) echo $(( 2 * buffer_bytes / 1024 + 256 )) ;;
    tickets) echo 2048 ;;
  esac
}
default_connections() {
  case "$1" in
    huge) echo "$huge_connections" ;;
    reset-storm) echo 1000 ;;
    idle-flood) echo "$IDLE_SOCKETS" ;;
    slow-headers) echo 200 ;;
    slow-frames) echo 1000 ;;
    slow-readers) echo 50 ;;
    over-limit) echo 2 ;;
    tickets) echo 4 ;;
    *) echo 1 ;;
  esac
}
is_gap() { local g; for g in "${KNOWN_GAPS[@]}"; do [ "$g" = "$1" ] && return 0; done; return 1; }

passed=0
failed=0
gaps_failed=()
gaps_passed=()
rows=()
for sc in "${scenarios[@]}"; do
  conns=$(default_connections "$sc")
  if ! kill -0 "$gg_pid" 2>/dev/null; then
    echo "abuse: guestgate is gone before $sc" >&2
    failed=$((failed + 1))
    continue
  fi
  echo 5 >"/proc/$gg_pid/clear_refs" || true # resets VmHWM to the current RSS
  rss_before=$(status_kib VmRSS)
  set +e
  timeout 120 "$bin/guestgate-abuse" "$sc" --target "127.0.0.1:$gg_port" --fake-stats "$stats" \
    --origin "$ORIGIN" --max-message "$max_message" --connections "$conns" \
    --fragment-bound-secs "$FRAGMENT_BOUND" --rate-limit-codes "$RATE_LIMIT_CODE" --handshake-timeout-secs "$HANDSHAKE_TIMEOUT" \
    --max-setups "$MAX_SETUPS" --upstream-latency-ms "$UPSTREAM_LATENCY_MS" --max-connections "$MAX_CONNECTIONS" --write-stall-secs "$WRITE_STALL" --close-timeout-secs "$CLOSE_TIMEOUT" \
    --ticket-ttl-secs "$TICKET_TTL" --ticket-max-lifetime-secs "$TICKET_MAX_LIFETIME" \
    >"$out/$sc.json" 2>"$out/$sc.log"
  rc=$?
  set -e
  peak=$(status_kib VmHWM || echo 0)
  fds_after=$(settle_fds)
  rss_after=$(status_kib VmRSS || echo 0)
  peak=${peak:-0} rss_after=${rss_after:-0}
  problems=()
  if ! kill -0 "$gg_pid" 2>/dev/null; then
    problems+=("guestgate died")
  fi
  if [ "$rc" -eq 2 ] || [ ! -s "$out/$sc.json" ]; then
    problems+=("guestgate-abuse could not run it (exit $rc): $(tail -n1 "$out/$sc.log")")
    echo '{}' >"$out/$sc.json"
  elif [ "$rc" -ne 0 ]; then
    problems+=("$("$python" -c 'import json,sys; print("; ".join(json.load(open(sys.argv[1]))["problems"]))' "$out/$sc.json")")
  fi
  per_conn=$(( (peak - rss_before) / conns ))
  bound=$(rss_bound_kib "$sc")
  [ "$per_conn" -le $((bound + SLACK_KIB / conns)) ] ||
    problems+=("peak RSS +$((peak - rss_before)) KiB = $per_conn KiB per connection (bound $bound KiB)")
  [ "$fds_after" -le $((fd_baseline + FD_SLACK)) ] ||
    problems+=("$fds_after fds 15 s after (baseline $fd_baseline)")
  setups=$(json_get "$out/$sc.json" upstream_sessions_created "-")
  if [ ${#problems[@]} -eq 0 ]; then
    verdict=pass
    passed=$((passed + 1))
    is_gap "$sc" && gaps_passed+=("$sc")
  elif is_gap "$sc"; then
    verdict="known gap"
    gaps_failed+=("$sc")
  else
    verdict=FAIL
    failed=$((failed + 1))
  fi
  detail=$(IFS='; '; echo "${problems[*]:-}")
  rows+=("$sc|$conns|$((peak - rss_before))|$per_conn|$bound|$rss_after|$fds_after|$setups|$verdict|$detail")
  echo "abuse: $sc: $verdict${detail:+ ($detail)}"
  "$python" - "$out/$sc.json" "$peak" "$rss_before" "$rss_after" "$fds_after" "$verdict" <<'EOF'
import json, sys
path, peak, before, after, fds, verdict = sys.argv[1:]
d = json.load(open(path))
d.update(rss_peak_kib=int(peak), rss_before_kib=int(before), rss_after_kib=int(after),
         fds_after=int(fds), verdict=verdict)
open(path, "w").write(json.dumps(d) + "\n")
EOF
done

# --- summary --------------------------------------------------------------------------------------
echo
printf '%-21s %6s %12s %14s %10s %10s %5s %7s  %s\n' scenario conns "peak +KiB" "KiB/conn" "bound" "RSS after" fds setups verdict
for row in "${rows[@]}"; do
  IFS='|' read -r sc conns delta per bound after fdn setups verdict _ <<<"$row"
  printf '%-21s %6s %12s %14s %10s %10s %5s %7s  %s\n' "$sc" "$conns" "$delta" "$per" "$bound" "$after" "$fdn" "$setups" "$verdict"
done
echo "(fd baseline $fd_baseline; RSS in KiB; figures per scenario in $out/*.json; took $((SECONDS - started)) s)"
for g in "${gaps_failed[@]}"; do echo "abuse: warning: known gap still open: $g"; done
for g in "${gaps_passed[@]}"; do echo "abuse: known gap $g now passes: remove it from KNOWN_GAPS"; done
echo "abuse: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
