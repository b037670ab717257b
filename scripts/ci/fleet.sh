#!/usr/bin/env bash
# A fleet behind a real load balancer: proves that rolling restarts, a killed replica and a
# resume-key rotation lose no conversation and no agent message (issue 14). On loopback:
#   - guestgate-fake: the fake Genesys, whose agent writes "agent message N" (N = 1..K) to
#     every conversation every AGENT_EVERY_MS, into history too, also while no socket is open;
#   - three `guestgate serve` replicas sharing the resume keys, on fixed ports so each comes
#     back where it was;
#   - Debian's HAProxy in front (leastconn, health-checking each replica's /readyz on its
#     admin port, retrying and redispatching a connection a draining replica refused);
#   - Debian's Prometheus scraping the three replicas (and HAProxy) every second with
#     deploy/monitoring/alerts.yml, only the `for:` durations shortened to ALERT_FOR;
#   - guestgate-fleet: CLIENTS page-like clients chatting through HAProxy, each from its own
#     127.1.x.y address, each checking every agent message arrives exactly once, in order.
# While they chat: three rolling restarts (SIGTERM, drain, start again, one replica after the
# other) that also rotate the resume key (K2 added, K2 made the sealing key, K1 retired), with
# a kept K1 ticket probed after each; then one replica is SIGKILLed (its pages reconnect
# elsewhere) and Prometheus must fire GuestgateReplicaDown for it. Prints the fleet's summary
# (counts, reconnect time p50/p99), the measured capacity figures, the checks, and
# `fleet.sh: N passed, M failed` alone on a line (the fleet's own checks included).
#
# Usage: bash scripts/ci/fleet.sh   (run by scripts/test.sh; installing packages needs root)
# FLEET_PROFILE=dev tests a debug build. FLEET_CLIENTS, FLEET_AGENT_EVERY_MS, FLEET_AGENT_MAX
# and FLEET_RAMP_MS change the load; FLEET_LB_RETRY=off drops HAProxy's retries (to see why
# they are there). Logs, configs and figures: target/fleet/.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$SECONDS

CLIENTS=${FLEET_CLIENTS:-300}
AGENT_EVERY_MS=${FLEET_AGENT_EVERY_MS:-500}
# The conversations must outlast the scenario (about 60 s from the ramp on the 2-core CI
# machine; K x AGENT_EVERY_MS = 120 s): a check below fails, asking for more, if any page
# finished before the last restart.
AGENT_MAX=${FLEET_AGENT_MAX:-240}
GUEST_EVERY_MS=4000        # each page writes a guest text this often
RAMP_MS=${FLEET_RAMP_MS:-0}  # pages start over this long (0: all at once)
ORIGIN="https://chat.fleet.test"
SHUTDOWN_GRACE=10          # server.shutdown_grace, seconds
CHECK_INTER_MS=500         # HAProxy health check interval on /readyz ...
CHECK_FALL=2               # ... failures before a replica leaves rotation
CHECK_RISE=2               # ... successes before it comes back
# server.drain_delay: /readyz 503 this long before the 1001s, so HAProxy (interval x fall)
# takes the replica out of rotation before its pages reconnect; FLEET_DRAIN_DELAY_MS=0 compares.
DRAIN_DELAY_MS=${FLEET_DRAIN_DELAY_MS:-$((CHECK_INTER_MS * CHECK_FALL + 500))}
ALERT_FOR=10s              # every alert's `for:` (GuestgateReplicaDown ships with 5m)
SETTLE_SECS=30             # bound on waiting for every page to be connected again
python=${PYTHON:-python3}

out=target/fleet
rm -rf "$out"
mkdir -p "$out/keys"
chmod 700 "$out/keys"

# --- tools ----------------------------------------------------------------------------------
need_pkgs=()
command -v haproxy >/dev/null 2>&1 || need_pkgs+=(haproxy)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need_pkgs+=(prometheus)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "fleet: installing Debian's ${need_pkgs[*]} (only the binaries are used; no service is started)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d stops invoke-rc.d from starting the packaged services where an init system
  # exists; without one (containers, CI) it is harmless.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  [ "$made_policy" = 1 ] && $sudo rm -f "$policy"
fi
echo "fleet: $(haproxy -v | head -n1); $(prometheus --version 2>&1 | head -n1)"

profile=${FLEET_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case "$profile" in
  release) bin=$target_dir/release ;;
  dev) bin=$target_dir/debug ;;
  *) echo "fleet: FLEET_PROFILE must be release or dev" >&2; exit 2 ;;
esac
echo "fleet: building guestgate, guestgate-fake and guestgate-fleet ($profile)"
cargo build --profile "$profile" --quiet --bin guestgate --bin guestgate-fake --bin guestgate-fleet
echo "fleet: built in $((SECONDS - started)) s"

# Thousands of sockets: every page holds one to HAProxy, HAProxy one to a replica, each
# replica one to the fake.
hard=$(ulimit -Hn)
want=65536
if [ "$hard" != "unlimited" ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want"

# A small helper for what bash cannot do alone: HTTP GETs, JSON, HAProxy's CSV, /proc.
tool=$out/tool.py
cat >"$tool" <<'PY'
import csv, io, json, sys, time, urllib.parse, urllib.request

def get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception as e:
        return 0, str(e)

def haproxy(url, proxy="guestgate"):
    status, body = get(url + "/stats;csv")
    rows = list(csv.DictReader(io.StringIO(body.lstrip("# "))))
    return {r["svname"]: r for r in rows if r["pxname"] == proxy}

def prom(base, query):
    status, body = get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    data = json.loads(body) if status == 200 else {}
    return data.get("data", {}).get("result", [])

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "status":            # URL -> HTTP status code
    print(get(args[0])[0])
elif cmd == "json":            # FILE KEY [DEFAULT]
    try:
        v = json.load(open(args[0])).get(args[1])
    except Exception:
        v = None
    print(args[2] if v is None and len(args) > 2 else v)
elif cmd == "get":             # URL KEY.KEY... -> that value of a JSON answer
    v = json.loads(get(args[0])[1])
    for k in args[1].split("."):
        v = v[k]
    print(v)
elif cmd == "lb-state":        # STATS_URL SERVER -> UP, DOWN, MAINT, ... (NOLB while draining)
    print(haproxy(args[0]).get(args[1], {}).get("status", "?").split(" ")[0])
elif cmd == "lb-field":        # STATS_URL SERVER FIELD
    print(haproxy(args[0]).get(args[1], {}).get(args[2], "") or 0)
elif cmd == "lb-frontend":     # STATS_URL FIELD: of the pages' frontend
    print(haproxy(args[0], "chat").get("FRONTEND", {}).get(args[1], "") or 0)
elif cmd == "lb-busiest":      # STATS_URL -> the server with the most current sessions
    servers = {k: v for k, v in haproxy(args[0]).items() if k not in ("FRONTEND", "BACKEND")}
    print(max(servers, key=lambda k: int(servers[k]["scur"] or 0)))
elif cmd == "metric":          # METRICS_URL NAME -> sum of the samples of NAME
    status, body = get(args[0])
    total = 0.0
    for line in body.splitlines():
        if line.startswith(args[1] + "{") or line.startswith(args[1] + " "):
            total += float(line.rsplit(" ", 1)[1])
    print(int(total))
elif cmd == "firing":          # PROM_URL ALERTNAME REPLICA -> 1 when firing for it
    res = prom(args[0], 'ALERTS{alertname="%s",alertstate="firing",replica="%s"}' % (args[1], args[2]))
    print(1 if res else 0)
elif cmd == "prom-count":      # PROM_URL QUERY -> how many series
    print(len(prom(args[0], args[1])))
elif cmd == "fired":           # PROM_URL -> every alert that fired during the run
    res = prom(args[0], 'max by (alertname, replica) (max_over_time(ALERTS{alertstate="firing"}[30m]))')
    print(" ".join(sorted("%s/%s" % (r["metric"].get("alertname"), r["metric"].get("replica", "-")) for r in res)))
elif cmd == "proc":            # PID -> "rss_kib cpu_ticks"
    pid = args[0]
    rss = next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    print(rss, int(stat[11]) + int(stat[12]))
PY
t() { "$python" "$tool" "$@"; }

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# --- processes ------------------------------------------------------------------------------
declare -A rpid        # replica -> pid of its current process
pids=()                # everything else
fleet_pid=""
cleanup() {
  for pid in "${rpid[@]}" "${pids[@]}" $fleet_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${rpid[@]}" "${pids[@]}" $fleet_pid; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

checks_passed=0
checks_failed=0
check_lines=()
check() { # check NAME OK(0/1) DETAIL
  if [ "$2" = 1 ]; then
    checks_passed=$((checks_passed + 1)); check_lines+=("  ok    $1${3:+ ($3)}")
  else
    checks_failed=$((checks_failed + 1)); check_lines+=("  FAIL  $1${3:+: $3}")
  fi
  echo "fleet: check: $([ "$2" = 1 ] && echo ok || echo FAIL): $1${3:+ ($3)}"
}
die() { echo "fleet: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# --- the fake Genesys -----------------------------------------------------------------------
"$bin/guestgate-fake" --agent-every-ms "$AGENT_EVERY_MS" --agent-max "$AGENT_MAX" \
  >"$out/fake.out" 2>"$out/fake.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$out/fake.out" ] && break; sleep 0.1; done
[ -s "$out/fake.out" ] || { cat "$out/fake.log" >&2; die "guestgate-fake did not start"; }
head -n1 "$out/fake.out" >"$out/fake.json"
genesys=$(t json "$out/fake.json" genesys)
fake_stats="http://$(t json "$out/fake.json" stats)/"

# --- resume keys: K1 now, K2 for the rotation -----------------------------------------------
(umask 077 && head -c 32 /dev/urandom | base64 >"$out/keys/k1.key" && head -c 32 /dev/urandom | base64 >"$out/keys/k2.key")
key_list() { # key_list k1 k2 -> TOML array entries, newest (sealing) first
  local k entries=""
  for k in "$@"; do entries+="{ file = \"$PWD/$out/keys/$k.key\" }, "; done
  echo "${entries%, }"
}

# --- the replicas ---------------------------------------------------------------------------
declare -A browser_port admin_port
for r in r1 r2 r3; do browser_port[$r]=$(free_port); admin_port[$r]=$(free_port); done
lb_port=$(free_port)
stats_port=$(free_port)
prom_port=$(free_port)
lb_stats="http://127.0.0.1:$stats_port"
prom_url="http://127.0.0.1:$prom_port"

write_config() { # write_config REPLICA KEY...
  local r=$1; shift
  cat >"$out/$r.toml" <<EOF
# Generated by scripts/ci/fleet.sh: replica $r.
[server]
listen = "127.0.0.1:${browser_port[$r]}"
admin_listen = "127.0.0.1:${admin_port[$r]}"
max_connections = 5000
shutdown_grace = "${SHUTDOWN_GRACE}s"
drain_delay = "${DRAIN_DELAY_MS}ms"

[[routes]]
name = "chat"
path = "/chat"

[routes.edge]
allowed_origins = ["$ORIGIN"]
# HAProxy connects from 127.0.0.1 and says who the page is in X-Forwarded-For: the
# per-address limits apply to each page (127.1.x.y), not to the load balancer.
trusted_proxies = ["127.0.0.1/32"]

[routes.genesys]
base_url = "ws://$genesys/v1"
deployment_id = "fake-deployment"
origin = "$ORIGIN"

[routes.resume]
keys = [$(key_list "$@")]
EOF
  "$bin/guestgate" check --config "$out/$r.toml" >"$out/$r.effective.toml" ||
    die "guestgate check refused $out/$r.toml"
}

start_replica() { # start_replica REPLICA: starts it and waits for /readyz 200
  local r=$1
  echo "=== $(date +%T.%3N) start" >>"$out/$r.log"
  "$bin/guestgate" serve --config "$out/$r.toml" >>"$out/$r.log" 2>&1 &
  rpid[$r]=$!
  for _ in $(seq 1 100); do
    kill -0 "${rpid[$r]}" 2>/dev/null || { tail -n 20 "$out/$r.log" >&2; die "$r exited at start-up"; }
    [ "$(t status "http://127.0.0.1:${admin_port[$r]}/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  die "$r not ready within 10 s"
}

wait_lb() { # wait_lb REPLICA STATE: until HAProxy reports the replica in STATE (15 s)
  for _ in $(seq 1 150); do
    [ "$(t lb-state "$lb_stats" "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

for r in r1 r2 r3; do write_config "$r" k1; start_replica "$r"; done

# --- HAProxy --------------------------------------------------------------------------------
# FLEET_LB_RETRY=off leaves the retry lines out, to see what a load balancer without them
# does to pages during a drain (the guide's comparison; the fleet's checks then fail).
lb_retry="    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503"
[ "${FLEET_LB_RETRY:-on}" = off ] && lb_retry="    retries 0"
cat >"$out/haproxy.cfg" <<EOF
# Generated by scripts/ci/fleet.sh.
global
    maxconn 4000
    nbthread 2

defaults
    mode http
    timeout connect 2s
    timeout http-request 5s
    timeout client 30s
    timeout server 30s
    # After the 101, a WebSocket is a tunnel: guestgate's own pings keep it alive.
    timeout tunnel 1h
    timeout client-fin 2s
    timeout server-fin 2s
    # The page's address for guestgate's per-address limits (trusted_proxies).
    option forwardfor
    # A replica that has just started draining refuses new connections (closed listener:
    # connection refused; a request already read: 503 "draining") before the health checks
    # take it out of rotation: retry those elsewhere, invisibly to the page.
$lb_retry

frontend chat
    bind 127.0.0.1:$lb_port
    default_backend guestgate

backend guestgate
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter ${CHECK_INTER_MS}ms fall $CHECK_FALL rise $CHECK_RISE
    server r1 127.0.0.1:${browser_port[r1]} port ${admin_port[r1]}
    server r2 127.0.0.1:${browser_port[r2]} port ${admin_port[r2]}
    server r3 127.0.0.1:${browser_port[r3]} port ${admin_port[r3]}

frontend stats
    bind 127.0.0.1:$stats_port
    http-request use-service prometheus-exporter if { path /metrics }
    stats enable
    stats uri /stats
EOF
haproxy -c -q -f "$out/haproxy.cfg" || die "haproxy refused its config"
haproxy -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
pids+=($!)
for r in r1 r2 r3; do wait_lb "$r" UP || { cat "$out/haproxy.log" >&2; die "HAProxy never saw $r UP"; }; done

# --- Prometheus -----------------------------------------------------------------------------
# The shipped rules, with every `for:` shortened so a killed replica's alert fires within the
# run; the expressions are unchanged.
sed -E "s/^([[:space:]]*for:[[:space:]]*)[0-9]+[smh]/\1$ALERT_FOR/" deploy/monitoring/alerts.yml >"$out/alerts.yml"
promtool check rules "$out/alerts.yml" >/dev/null || die "promtool refused the shortened rules"
cat >"$out/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - '$PWD/$out/alerts.yml'
scrape_configs:
  - job_name: guestgate
    static_configs:
      - targets: ['127.0.0.1:${admin_port[r1]}']
        labels: { replica: r1 }
      - targets: ['127.0.0.1:${admin_port[r2]}']
        labels: { replica: r2 }
      - targets: ['127.0.0.1:${admin_port[r3]}']
        labels: { replica: r3 }
  - job_name: haproxy
    static_configs:
      - targets: ['127.0.0.1:$stats_port']
EOF
prometheus --config.file="$out/prometheus.yml" --storage.tsdb.path="$out/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$out/prometheus.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ "$(t status "$prom_url/-/ready")" = 200 ] && break; sleep 0.2; done
[ "$(t status "$prom_url/-/ready")" = 200 ] || { tail -n 20 "$out/prometheus.log" >&2; die "Prometheus not ready"; }
# Every replica scraped once before anything happens to them.
for _ in $(seq 1 100); do
  [ "$(t prom-count "$prom_url" 'up{job="guestgate"} == 1')" = 3 ] && break
  sleep 0.2
done
[ "$(t prom-count "$prom_url" 'up{job="guestgate"} == 1')" = 3 ] || die "Prometheus does not scrape all three replicas"
echo "fleet: fake Genesys at $genesys; replicas r1 r2 r3; HAProxy on 127.0.0.1:$lb_port; Prometheus on 127.0.0.1:$prom_port ($((SECONDS - started)) s)"

probe() { # probe ARGS...: prints newSession (true/false/null) or "error"
  "$bin/guestgate-fleet" probe --target "127.0.0.1:$lb_port" --origin "$ORIGIN" "$@" 2>>"$out/probe.log" |
    "$python" -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read())["newSession"]))' 2>/dev/null || echo error
}
# A ticket sealed with K1 before the rotation: a page that went away and comes back later.
k1_ticket=$out/keys/k1.ticket
first=$(probe --ticket-out "$k1_ticket")
check "a new conversation through the load balancer" "$([ "$first" = true ] && echo 1 || echo 0)" "newSession $first"

# --- at rest --------------------------------------------------------------------------------
declare -A rss0
for r in r1 r2 r3; do read -r rss0[$r] _ < <(t proc "${rpid[$r]}"); done

# --- the fleet ------------------------------------------------------------------------------
rolls=3
"$bin/guestgate-fleet" run --target "127.0.0.1:$lb_port" --origin "$ORIGIN" --clients "$CLIENTS" \
  --agent-max "$AGENT_MAX" --guest-every-ms "$GUEST_EVERY_MS" --min-reconnects "$rolls" --ramp-ms "$RAMP_MS" \
  --max-secs $((AGENT_MAX * AGENT_EVERY_MS / 1000 + 150)) \
  --status "$out/status.json" --report "$out/fleet.json" >"$out/fleet.out" 2>"$out/fleet.log" &
fleet_pid=$!
fleet_started_ms=$(now_ms)

status() { # status FIELD: from the fleet's status file (one line of flat JSON), without a fork
  local j=""
  [ -r "$out/status.json" ] && read -r j <"$out/status.json"
  if [[ $j =~ \"$1\":([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi
}
settle() { # settle [R0 N]: waits until every page is connected (or done) and, given R0 and N,
  # until N more reconnects than R0 have completed; prints the milliseconds it took
  local t0 c f
  t0=$(now_ms)
  for _ in $(seq 1 $((SETTLE_SECS * 20))); do
    c=$(status connected); f=$(status finished)
    if [ $((c + f)) -ge "$CLIENTS" ] && [ "$(status reconnects)" -ge $((${1:-0} + ${2:-0})) ]; then
      echo $(($(now_ms) - t0)); return 0
    fi
    kill -0 "$fleet_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "fleet: only $(status connected) of $CLIENTS pages connected after ${SETTLE_SECS} s" >&2
  echo -1
  return 1
}
ramp_ms=$(settle) || die "the fleet did not ramp up: $(tail -n 5 "$out/fleet.log")"
echo "fleet: $CLIENTS pages connected through HAProxy in $ramp_ms ms"

# Steady state: memory per connection and CPU per message, per replica.
sleep 3
declare -A cpu0 conns
for r in r1 r2 r3; do read -r _ cpu0[$r] < <(t proc "${rpid[$r]}"); done
msgs0=$(status agent_messages); steady_t0=$(now_ms)
sleep 10
msgs1=$(status agent_messages); steady_ms=$(( $(now_ms) - steady_t0 ))
rss_total_delta=0; conns_total=0; cpu_ticks=0; rss_lines=()
for r in r1 r2 r3; do
  read -r rss cpu < <(t proc "${rpid[$r]}")
  conns[$r]=$(t metric "http://127.0.0.1:${admin_port[$r]}/metrics" guestgate_connections_open)
  rss_total_delta=$((rss_total_delta + rss - rss0[$r])); conns_total=$((conns_total + conns[$r]))
  cpu_ticks=$((cpu_ticks + cpu - cpu0[$r]))
  rss_lines+=("$r: ${conns[$r]} connections, RSS ${rss} KiB (at rest ${rss0[$r]} KiB)")
done
clk=$(getconf CLK_TCK)
steady_msgs=$((msgs1 - msgs0))
echo "fleet: steady state: ${rss_lines[*]}"
kib_per_conn=$("$python" -c "print(round($rss_total_delta / max($conns_total, 1), 1))")
msgs_per_sec=$("$python" -c "print(round($steady_msgs * 1000 / $steady_ms))")
cpu_ms_per_1k=$("$python" -c "print(round($cpu_ticks * 1000 / $clk / max($steady_msgs, 1) * 1000, 1))")
echo "fleet: $kib_per_conn KiB RSS per connection; $msgs_per_sec agent messages/s through the fleet; replicas' CPU $cpu_ms_per_1k ms per 1000 messages"

# --- rolling restarts with the key rotation -------------------------------------------------
drain_lines=()
restart() { # restart REPLICA KEY...: SIGTERM, drain, every page back elsewhere, start with the new keys
  local r=$1; shift
  local pages r0 t0 rc drained_ms back_ms
  pages=$(t lb-field "$lb_stats" "$r" scur)
  r0=$(status reconnects)
  write_config "$r" "$@"
  t0=$(now_ms)
  kill -TERM "${rpid[$r]}"
  # The drain is bounded by shutdown_grace; give it that plus a margin.
  rc=0
  if timeout $((SHUTDOWN_GRACE + 10)) tail -s 0.05 --pid="${rpid[$r]}" -f /dev/null; then
    wait "${rpid[$r]}" || rc=$?
  else
    rc=timeout
    kill -KILL "${rpid[$r]}" 2>/dev/null || true
    wait "${rpid[$r]}" 2>/dev/null || true
  fi
  drained_ms=$(($(now_ms) - t0))
  # Its pages resume on the other two before it comes back, as in a rollout where the old
  # pod is gone for good.
  settle "$r0" "$pages" >/dev/null || settle_failures+=("after SIGTERM $r")
  back_ms=$(($(now_ms) - t0))
  start_replica "$r"
  wait_lb "$r" UP || die "HAProxy never saw $r UP again"
  drain_lines+=("$r: $pages pages; drained and exited in $drained_ms ms (exit $rc); every page resumed elsewhere $back_ms ms after SIGTERM")
  echo "fleet: $r restarted with keys [$*]: $pages pages, drained in $drained_ms ms (exit $rc), all resumed elsewhere after $back_ms ms"
  [ "$rc" = 0 ] || drain_failures=$((drain_failures + 1))
}
drain_failures=0
settle_failures=()
roll() { # roll KEY...: every replica, one after the other
  for r in r1 r2 r3; do restart "$r" "$@"; done
}

roll k1 k2
after_add=$(probe --ticket-in "$k1_ticket")
check "K2 added everywhere: the K1 ticket still resumes" "$([ "$after_add" = false ] && echo 1 || echo 0)" "newSession $after_add"

roll k2 k1
after_swap=$(probe --ticket-in "$k1_ticket")
check "K2 seals, K1 still opens: the K1 ticket still resumes" "$([ "$after_swap" = false ] && echo 1 || echo 0)" "newSession $after_swap"
k2_ticket=$out/keys/k2.ticket
k2_new=$(probe --ticket-out "$k2_ticket")

# --- one replica killed without a drain -----------------------------------------------------
victim=$(t lb-busiest "$lb_stats")
victim_conns=$(t lb-field "$lb_stats" "$victim" scur)
r0=$(status reconnects)
kill_t0=$(now_ms)
kill -KILL "${rpid[$victim]}"
wait "${rpid[$victim]}" 2>/dev/null || true
settle "$r0" "$victim_conns" >/dev/null || settle_failures+=("after SIGKILL $victim")
kill_settle_ms=$(($(now_ms) - kill_t0))
echo "fleet: SIGKILL $victim with $victim_conns pages: every page resumed elsewhere within $kill_settle_ms ms"
alert_ms=-1
for _ in $(seq 1 600); do
  if [ "$(t firing "$prom_url" GuestgateReplicaDown "$victim")" = 1 ]; then alert_ms=$(($(now_ms) - kill_t0)); break; fi
  sleep 0.1
done
check "Prometheus fires GuestgateReplicaDown for the killed replica" "$([ "$alert_ms" -ge 0 ] && echo 1 || echo 0)" \
  "$([ "$alert_ms" -ge 0 ] && echo "firing $alert_ms ms after SIGKILL, for: $ALERT_FOR" || echo "not firing 60 s after SIGKILL")"
start_replica "$victim"
wait_lb "$victim" UP || die "HAProxy never saw $victim UP again"

# --- K1 retired ------------------------------------------------------------------------------
roll k2
after_retire=$(probe --ticket-in "$k1_ticket")
check "K1 retired: the K1 ticket no longer resumes (a new conversation)" "$([ "$after_retire" = true ] && echo 1 || echo 0)" "newSession $after_retire"
k2_after=$(probe --ticket-in "$k2_ticket")
check "a ticket sealed with K2 during the overlap resumes after K1 is retired" \
  "$([ "$k2_new" = true ] && [ "$k2_after" = false ] && echo 1 || echo 0)" "newSession $k2_new then $k2_after"
scenario_ms=$(($(now_ms) - fleet_started_ms))
finished_early=$(status finished)
if [ "$finished_early" = 0 ]; then
  check "the conversations outlasted the restarts" 1 "scenario over after $scenario_ms ms, no page finished yet"
else
  check "the conversations outlasted the restarts" 0 "$finished_early pages had finished after $scenario_ms ms; raise FLEET_AGENT_MAX"
fi
check "every page resumed within ${SETTLE_SECS} s of each restart and of the kill" "$([ ${#settle_failures[@]} = 0 ] && echo 1 || echo 0)" \
  "$([ ${#settle_failures[@]} = 0 ] && echo "10 of 10" || echo "not ${settle_failures[*]}")"
check "every SIGTERM drained cleanly (exit 0 within shutdown_grace)" "$([ "$drain_failures" = 0 ] && echo 1 || echo 0)" \
  "$([ "$drain_failures" = 0 ] && echo "9 of 9" || echo "$drain_failures did not")"

# --- the end of the conversations -----------------------------------------------------------
fleet_rc=0
wait "$fleet_pid" || fleet_rc=$?
fleet_pid=""
cat "$out/fleet.out"
fleet_passed=$(t json "$out/fleet.json" passed 0)
fleet_failed=$(t json "$out/fleet.json" failed 1)
[ "$fleet_rc" = 0 ] || [ "$fleet_failed" != 0 ] || fleet_failed=1

fired=$(t fired "$prom_url")
check "no alert but GuestgateReplicaDown for the killed replica fired" \
  "$([ "$fired" = "GuestgateReplicaDown/$victim" ] && echo 1 || echo 0)" "fired: ${fired:-none}"

# HAProxy's view: connections it retried or sent elsewhere, and errors it answered.
lb_lines=()
for r in r1 r2 r3; do
  lb_lines+=("$r: $(t lb-field "$lb_stats" "$r" stot) connections, $(t lb-field "$lb_stats" "$r" wredis) redispatched elsewhere, $(t lb-field "$lb_stats" "$r" econ) connection errors")
done
lb_5xx=$(t lb-frontend "$lb_stats" hrsp_5xx)
redispatched=0
for r in r1 r2 r3; do redispatched=$((redispatched + $(t lb-field "$lb_stats" "$r" wredis))); done
# Every conversation is one upstream session from its first connection to its last: the
# fake Genesys created one per page plus one per probe that started a conversation (the
# first, the K2 one, and the K1 ticket refused after its key was retired).
sessions=$(t get "$fake_stats" genesys.sessions)
check "one upstream session per conversation, however often it reconnected" \
  "$([ "$sessions" = $((CLIENTS + 3)) ] && echo 1 || echo 0)" "the fake Genesys created $sessions sessions for $CLIENTS pages + 3 probes"
check "HAProxy answered no page with a 5xx" "$([ "$lb_5xx" = 0 ] && echo 1 || echo 0)" "$lb_5xx"

# --- figures --------------------------------------------------------------------------------
echo
echo "fleet figures ($CLIENTS pages, agent every $AGENT_EVERY_MS ms, $rolls rolling restarts + 1 SIGKILL, $profile build):"
echo "  ramp: $CLIENTS pages connected through HAProxy in $ramp_ms ms"
echo "  steady: ${rss_lines[*]}"
echo "  memory: $kib_per_conn KiB RSS per Genesys connection (RSS above the replica at rest / open connections)"
echo "  messages: $msgs_per_sec agent messages/s delivered; replicas' CPU $cpu_ms_per_1k ms per 1000 messages"
for l in "${drain_lines[@]}"; do echo "  drain $l"; done
echo "  SIGKILL $victim ($victim_conns pages): every page resumed elsewhere $kill_settle_ms ms after the kill; alert firing after $alert_ms ms"
for l in "${lb_lines[@]}"; do echo "  HAProxy $l"; done
echo "  HAProxy sent $redispatched connections to another replica after the first one refused them"
"$python" - "$out/fleet.json" "$out/figures.json" <<PY
import json, sys
f = json.load(open(sys.argv[1]))
f.update(ramp_ms=$ramp_ms, kib_per_connection=$kib_per_conn, messages_per_sec=$msgs_per_sec,
         cpu_ms_per_1000_messages=$cpu_ms_per_1k, kill_settle_ms=$kill_settle_ms, alert_ms=$alert_ms)
json.dump(f, open(sys.argv[2], "w"), indent=1)
r = f["reconnect_ms"]
print(f"  reconnect time p50 {r['p50']} ms, p99 {r['p99']} ms (n={r['n']}); closes 1011: {f['closes_1011']}, 4xxx: {f['closes_4xxx']}; agent messages lost {f['agent_lost']}, doubled {f['agent_doubled']}")
PY
echo
echo "fleet.sh checks:"
for l in "${check_lines[@]}"; do echo "$l"; done
echo "(took $((SECONDS - started)) s; logs and figures in $out/)"
total_passed=$((checks_passed + fleet_passed))
total_failed=$((checks_failed + fleet_failed))
echo "fleet.sh: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
