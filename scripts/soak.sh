#!/usr/bin/env bash
# Soak test (not run in CI): guestgate `serve --upstream` in front of an echo upstream on
# loopback, SOAK_CONNECTIONS browser connections held for SOAK_SECONDS, each sending one
# message every SOAK_INTERVAL seconds and checking the echo. Every SOAK_SAMPLE seconds it
# samples guestgate's RSS (/proc/PID/status), open fds (/proc/PID/fd), its open-connection
# gauge and the clients' error counts; at the end it prints a report with RSS per connection
# and checks that guestgate let go of everything once the clients closed.
#
#   bash scripts/soak.sh                                   # 5000 connections, 5 minutes
#   SOAK_SECONDS=30 SOAK_CONNECTIONS=1000 bash scripts/soak.sh
#
# Settings (environment): SOAK_SECONDS (300), SOAK_CONNECTIONS (5000), SOAK_INTERVAL (5),
# SOAK_MESSAGE_BYTES (64), SOAK_SAMPLE (10), SOAK_SETTLE (10: seconds allowed after the
# clients finish for guestgate to return to its baseline), SOAK_ROUNDS (1: run the whole fleet
# again this many times against the same guestgate; RSS that stays flat after round 1 is
# allocator retention, RSS that keeps growing is a leak), SOAK_NO_BUILD=1 to skip the build.
# With glibc malloc, guestgate's RSS after a round stays near the high-water mark of the 128 KiB
# read buffers leased at once (the close burst) and can ratchet up over rounds; run with
# MALLOC_MMAP_THRESHOLD_=131072 in the environment to tell that retention from a leak.
# Exit status: 0 when there were no client errors, no failed connections in guestgate's
# metrics and guestgate returned to 0 connections and its baseline fds; 1 otherwise.
set -euo pipefail

SOAK_SECONDS=${SOAK_SECONDS:-300}
SOAK_CONNECTIONS=${SOAK_CONNECTIONS:-5000}
SOAK_INTERVAL=${SOAK_INTERVAL:-5}
SOAK_MESSAGE_BYTES=${SOAK_MESSAGE_BYTES:-64}
SOAK_SAMPLE=${SOAK_SAMPLE:-10}
SOAK_SETTLE=${SOAK_SETTLE:-10}
SOAK_ROUNDS=${SOAK_ROUNDS:-1}

cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/target/release"

if [[ "${SOAK_NO_BUILD:-0}" != 1 ]]; then
    echo "== building release binaries"
    cargo build --release --bin guestgate --bin guestgate-soak
fi

# guestgate holds two sockets per connection, the clients and the echo one each.
need=$((SOAK_CONNECTIONS * 2 + 256))
hard=$(ulimit -Hn)
if [[ "$hard" != unlimited && "$hard" -lt "$need" ]]; then
    echo "soak: the fd hard limit ($hard) is below the $need needed for $SOAK_CONNECTIONS connections" >&2
    exit 1
fi
ulimit -n "$need" 2>/dev/null || ulimit -n "$hard"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Waits (bounded) until FILE has a line matching PATTERN; prints it.
wait_line() {
    local file=$1 pattern=$2 what=$3
    for _ in $(seq 1 100); do
        if line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null); then
            echo "$line"
            return 0
        fi
        sleep 0.1
    done
    echo "soak: $what did not start; its output:" >&2
    cat "$file" >&2
    exit 1
}

echo "== starting the echo upstream and guestgate"
"$bin/guestgate-soak" echo --listen 127.0.0.1:0 >"$work/echo.log" 2>&1 &
pids+=($!)
echo_addr=$(wait_line "$work/echo.log" '^listening ' "the echo upstream" | awk '{print $2}')

"$bin/guestgate" --log-format json --log warn,guestgate=info serve \
    --upstream "ws://$echo_addr/" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    >"$work/guestgate.log" 2>&1 &
gg_pid=$!
pids+=("$gg_pid")
serving=$(wait_line "$work/guestgate.log" '"guestgate is serving"' "guestgate")
gg_addr=$(jq -r .listen <<<"$serving")
admin_addr=$(jq -r .admin <<<"$serving")

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$gg_pid/status"; }
fds() { find "/proc/$gg_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
metrics() { curl -fsS --max-time 5 "http://$admin_addr/metrics"; }
# Sums a metric's series whose line matches an extended regex.
metric_sum() { metrics | awk -v re="$1" '$0 ~ re && $1 !~ /^#/ {s += $NF} END {printf "%d", s}'; }
open_gauge() { metric_sum '^guestgate_connections_open[{ ]'; }

sleep 1
base_rss=$(rss_kib)
base_fds=$(fds)
echo "guestgate pid $gg_pid on $gg_addr (admin $admin_addr), upstream $echo_addr"
echo "baseline: RSS ${base_rss} KiB, ${base_fds} fds"
# Empty splice pipes each worker thread keeps for reuse after large messages: at most 4 pipes
# (8 fds) per thread, and tokio runs one worker thread per CPU. They are a bounded cache, not a
# leak, so the fd checks allow them.
pool_fds=$((8 * $(nproc)))
fd_slack=$((10 + pool_fds))
echo "== $SOAK_CONNECTIONS connections for ${SOAK_SECONDS}s, one ${SOAK_MESSAGE_BYTES}-byte message per connection every ${SOAK_INTERVAL}s"

started=$(date +%s)
peak_rss=$base_rss
peak_fds=$base_fds
load_rss_rounds=()   # per round: the highest RSS sampled while every connection was open
after_rss_rounds=()  # per round: RSS once the clients had closed
clients_status=0
for round in $(seq 1 "$SOAK_ROUNDS"); do
    ((SOAK_ROUNDS == 1)) || echo "-- round $round of $SOAK_ROUNDS"
    "$bin/guestgate-soak" clients --url "ws://$gg_addr/ws" --connections "$SOAK_CONNECTIONS" \
        --seconds "$SOAK_SECONDS" --interval "$SOAK_INTERVAL" --message-bytes "$SOAK_MESSAGE_BYTES" \
        --report-every "$SOAK_SAMPLE" >"$work/clients.$round.log" 2>>"$work/clients.err" &
    clients_pid=$!
    pids+=("$clients_pid")
    printf '%6s %10s %8s %8s  %s\n' "t(s)" "RSS(KiB)" "fds" "open" "clients"
    load_rss=0
    while kill -0 "$clients_pid" 2>/dev/null; do
        for _ in $(seq 1 "$SOAK_SAMPLE"); do
            kill -0 "$clients_pid" 2>/dev/null || break
            sleep 1
        done
        kill -0 "$gg_pid" 2>/dev/null || { echo "soak: guestgate died" >&2; exit 1; }
        rss=$(rss_kib)
        nfds=$(fds)
        open=$(open_gauge || echo "?")
        client=$(grep -E '^t=' "$work/clients.$round.log" | tail -n1 | cut -d' ' -f2- || true)
        printf '%6d %10d %8d %8s  %s\n' $(($(date +%s) - started)) "$rss" "$nfds" "$open" "$client"
        ((rss > peak_rss)) && peak_rss=$rss
        ((nfds > peak_fds)) && peak_fds=$nfds
        if [[ "$open" == "$SOAK_CONNECTIONS" ]] && ((rss > load_rss)); then
            load_rss=$rss
        fi
    done
    wait "$clients_pid" || clients_status=$?
    unset 'pids[-1]'

    # Let guestgate finish the close handshakes, then compare with the baseline.
    for _ in $(seq 1 $((SOAK_SETTLE * 10))); do
        if [[ "$(open_gauge)" == 0 && "$(fds)" -le $((base_fds + pool_fds + 2)) ]]; then
            break
        fi
        sleep 0.1
    done
    load_rss_rounds+=("$load_rss")
    after_rss_rounds+=("$(rss_kib)")
    echo "after round $round: RSS ${after_rss_rounds[-1]} KiB, $(fds) fds, $(open_gauge) open"
done
after_rss=$(rss_kib)
after_fds=$(fds)
after_open=$(open_gauge)

result=$(cat "$work"/clients.*.log | grep -E '^RESULT' || echo "RESULT missing")
client_errors=$(grep -oE '(connect|message|close)_errors=[0-9]+' <<<"$result" | awk -F= '{s += $2} END {print s + 0}')
((SOAK_ROUNDS == 1)) || client_errors=$((client_errors + SOAK_ROUNDS - $(grep -c '^RESULT' <<<"$result")))
failed=$(metric_sum '^guestgate_connections_total[{].*outcome="(upstream_failed|rejected)"')
relayed=$(metric_sum '^guestgate_connections_total[{].*outcome="relayed"')
upstream_failures=$(metric_sum '^guestgate_upstream_failures_total[{]')
abnormal_closes=$(metric_sum '^guestgate_closes_total[{].*code_class="(none|protocol|policy|too_big|internal|gg_refused|gg_upstream_failed|other)"')
warnings=$(grep -cE '"level":"(WARN|ERROR)"' "$work/guestgate.log" || true)
# The start-up warning about allow_any_origin is expected.
warnings=$((warnings > 0 ? warnings - 1 : 0))

# RSS per connection from the first round (later rounds start from retained memory).
load_rss=${load_rss_rounds[0]}
((load_rss > 0)) || load_rss=$peak_rss
per_conn=$(awk -v l="$load_rss" -v b="$base_rss" -v n="$SOAK_CONNECTIONS" 'BEGIN {printf "%.1f", (l - b) / n}')
fds_per_conn=$(awk -v p="$peak_fds" -v b="$base_fds" -v n="$SOAK_CONNECTIONS" 'BEGIN {printf "%.2f", (p - b) / n}')

echo
echo "== soak report"
echo "clients:            ${result//$'\n'/$'\n'                    }"
echo "guestgate RSS:      baseline ${base_rss} KiB, with all connections open ${load_rss} KiB (peak ${peak_rss} KiB), after ${after_rss} KiB"
echo "RSS per connection: ${per_conn} KiB  ((loaded - baseline) / $SOAK_CONNECTIONS)"
if ((SOAK_ROUNDS > 1)); then
    growth=$(awk -v a="${after_rss_rounds[0]}" -v z="${after_rss_rounds[-1]}" -v n="$SOAK_CONNECTIONS" 'BEGIN {printf "%.2f", (z - a) / n}')
    echo "RSS loaded, rounds: ${load_rss_rounds[*]} KiB"
    echo "RSS after rounds:   ${after_rss_rounds[*]} KiB (growth from round 1 to $SOAK_ROUNDS: ${growth} KiB per connection)"
fi
echo "guestgate fds:      baseline ${base_fds}, peak ${peak_fds} (${fds_per_conn} per connection), after ${after_fds}"
echo "open connections:   after the clients closed: ${after_open}"
echo "guestgate metrics:  relayed ${relayed}, failed/rejected ${failed}, upstream failures ${upstream_failures}, abnormal closes ${abnormal_closes}"
echo "guestgate log:      ${warnings} warnings/errors beyond the start-up one"
if [[ -s "$work/clients.err" ]]; then
    echo "client error lines (first 10):"
    head -n 10 "$work/clients.err" | sed 's/^/  /'
fi

status=0
((clients_status == 0 && client_errors == 0)) || { echo "FAIL: client errors"; status=1; }
((failed == 0 && upstream_failures == 0 && abnormal_closes == 0)) || { echo "FAIL: guestgate counted failed connections"; status=1; }
[[ "$after_open" == 0 ]] || { echo "FAIL: guestgate still holds $after_open connections"; status=1; }
((after_fds <= base_fds + fd_slack)) || { echo "FAIL: guestgate holds $after_fds fds, baseline $base_fds (+$fd_slack allowed)"; status=1; }
((status == 0)) && echo "PASS"
exit "$status"
