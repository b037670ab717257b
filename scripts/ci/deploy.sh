#!/usr/bin/env bash
# Checks deploy/: Kubernetes manifests (kubernetes-validate from PyPI, strict), cross-file
# consistency (drain timing, ports, kustomization), the ConfigMap's guestgate.toml through
# `guestgate check` with dummy secret files, and the systemd unit (systemd-analyze verify).
# Runs as root on a fresh Debian machine with only package registries reachable.
# Prints `deploy: N passed, M failed`; exits non-zero on any failure.
set -uo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
K8S=deploy/kubernetes
KV_VERSION=1.37.0            # kubernetes-validate; its default schema version is Kubernetes 1.37
PYDIR=$ROOT/target/deploy-py
passed=0
failed=0
ok()   { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- tools -----------------------------------------------------------------------------
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
    echo "deploy: installing python3 and pip from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null
fi
if ! PYTHONPATH=$PYDIR python3 -c "import kubernetes_validate, yaml, sys; \
        from importlib.metadata import version; \
        sys.exit(version('kubernetes-validate') != '$KV_VERSION')" 2>/dev/null; then
    echo "deploy: installing kubernetes-validate==$KV_VERSION into $PYDIR"
    # --target keeps it out of the system Python (and is allowed under PEP 668).
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --upgrade --target "$PYDIR" "kubernetes-validate==$KV_VERSION" \
        || { echo "deploy: pip install failed"; echo "deploy: 0 passed, 1 failed"; exit 1; }
fi
export PYTHONPATH=$PYDIR

# --- 1. every manifest against the Kubernetes 1.37 schemas, strict -----------------------
# Kinds without a bundled schema (ServiceMonitor, Kustomization) only warn; they are checked
# structurally in step 2.
for f in "$K8S"/*.yaml; do
    if out=$(python3 -m kubernetes_validate --strict --quiet "$f" 2>&1); then
        ok "kubernetes-validate $f${out:+ ($(echo "$out" | grep -c WARN) warning)}"
    else
        fail "kubernetes-validate $f"; echo "$out" | sed 's/^/    /'
    fi
done

# --- 2. consistency between the manifests and the shipped config -------------------------
if out=$(python3 - "$K8S" <<'PY' 2>&1
import os, re, sys, yaml, tomllib
k8s = sys.argv[1]
docs = {}
for name in sorted(os.listdir(k8s)):
    if name.endswith(".yaml"):
        for d in yaml.safe_load_all(open(os.path.join(k8s, name))):
            if d:
                docs[(d["kind"], d.get("metadata", {}).get("name", name))] = (name, d)
problems = []
def need(cond, msg):
    if not cond:
        problems.append(msg)

kust = docs[("Kustomization", "kustomization.yaml")][1]
files = {n for n in os.listdir(k8s) if n.endswith(".yaml") and n != "kustomization.yaml"}
need(set(kust["resources"]) == files, f"kustomization resources {sorted(kust['resources'])} != files {sorted(files)}")

cm = docs[("ConfigMap", "guestgate-config")][1]
text = cm["data"]["guestgate.toml"]
cfg = tomllib.loads(text)
def secs(v):
    m = re.fullmatch(r"(\d+)(ms|s|m)", v)
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]]
grace = secs(cfg["server"]["shutdown_grace"])
need(cfg["server"]["listen"].endswith(":8080"), "server.listen must be on 8080")
need(cfg["server"]["admin_listen"] == "0.0.0.0:9090", "admin_listen must be 0.0.0.0:9090 for probes/scrapes")

pod = docs[("Deployment", "guestgate")][1]["spec"]["template"]["spec"]
c = pod["containers"][0]
pre = c["lifecycle"]["preStop"]["sleep"]["seconds"]
tgp = pod["terminationGracePeriodSeconds"]
need(tgp >= pre + grace + 5, f"terminationGracePeriodSeconds {tgp} < preStop {pre} + shutdown_grace {grace} + 5")
# Memory follows the capacity guide (docs/operations.md): the request covers max_connections
# Genesys conversations at the 44 KiB each scripts/ci/fleet.sh measured, plus 64 MiB for the
# process and busy buffers; the limit leaves room above it. The HPA's connection target is
# low enough that minReplicas - 1 replicas hold every connection when one replica is lost.
def mib(q):
    m = re.fullmatch(r"(\d+)(Mi|Gi)", q)
    return int(m[1]) * (1024 if m[2] == "Gi" else 1)
max_conns = cfg["server"]["max_connections"]
req, lim = mib(c["resources"]["requests"]["memory"]), mib(c["resources"]["limits"]["memory"])
need(req * 1024 >= max_conns * 44 + 64 * 1024,
     f"memory request {req}Mi < max_connections {max_conns} x 44 KiB + 64 MiB")
need(lim > req, f"memory limit {lim}Mi must exceed the request {req}Mi")
hpa = docs[("HorizontalPodAutoscaler", "guestgate")][1]
for m in hpa["spec"]["metrics"]:
    if m["type"] == "Pods" and m["pods"]["metric"]["name"] == "guestgate_connections_open":
        target = int(m["pods"]["target"]["averageValue"])
        low = hpa["spec"]["minReplicas"]
        need(target * low <= (low - 1) * max_conns,
             f"HPA connection target {target} x minReplicas {low} > {low - 1} x max_connections {max_conns}: "
             "one replica lost would leave more connections than the rest can hold")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
need(ports == {"browser": 8080, "admin": 9090}, f"container ports {ports}")
need(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, "readiness must be admin /readyz")
need(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}, "liveness must be admin /healthz")
sc = c["securityContext"]
need(sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
     and sc["capabilities"]["drop"] == ["ALL"], "container securityContext not hardened")
need(pod["securityContext"].get("runAsNonRoot") and
     pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "pod securityContext not hardened")

# every secret file the config names is a key of the mounted Secret
sec = docs[("Secret", "guestgate-secrets")][1]
mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "secrets")
for path in re.findall(r'file = "([^"]+)"', text):
    need(os.path.dirname(path) == mount and os.path.basename(path) in sec["stringData"],
         f"config names {path}, not a key of guestgate-secrets mounted at {mount}")
for v in sec["stringData"].values():
    need(v.startswith("PLACEHOLDER"), "secret.yaml must hold only PLACEHOLDER values")

svc = docs[("Service", "guestgate")][1]
need([p["port"] for p in svc["spec"]["ports"]] == [8080], "public Service must expose 8080 only")
adm = docs[("Service", "guestgate-admin")][1]
sm = docs[("ServiceMonitor", "guestgate")][1]
sel = sm["spec"]["selector"]["matchLabels"]
need(all(adm["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selector misses guestgate-admin")
need(not all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), "ServiceMonitor selector also matches the public Service")
need({e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in adm["spec"]["ports"]}, "ServiceMonitor port not on guestgate-admin")
need(all(e["path"] == "/metrics" for e in sm["spec"]["endpoints"]), "ServiceMonitor path must be /metrics")
need(adm["metadata"]["labels"].get(sm["spec"]["jobLabel"]) == "guestgate", "job label must be guestgate (alerts.yml selects it)")
need(max(secs(r["relay"]["browser_ping_interval"]) if "relay" in r else 30 for r in cfg["routes"]) < 60,
     "browser pings must beat common 60 s proxy idle timeouts")
if problems:
    print("\n".join(problems)); sys.exit(1)
PY
); then
    ok "manifests consistent with each other and with the shipped guestgate.toml"
else
    fail "manifest consistency"; echo "$out" | sed 's/^/    /'
fi

# --- 3. the ConfigMap's guestgate.toml through `guestgate check` --------------------------
echo "deploy: cargo build --bin guestgate"
if cargo build --quiet --bin guestgate; then
    GG=${CARGO_TARGET_DIR:-$ROOT/target}/debug/guestgate
    mkdir -p "$tmp/secrets"
    python3 -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open(sys.argv[1]))["data"]["guestgate.toml"])' \
        "$K8S/configmap.yaml" > "$tmp/guestgate.toml"
    # dummy secrets of the right shape: 32 random bytes in base64 (44 bytes as read) is a valid
    # resume key, a long enough site-ticket key and an OAuth client secret
    for path in $(grep -o 'file = "/etc/guestgate/secrets/[^"]*"' "$tmp/guestgate.toml" | cut -d'"' -f2); do
        head -c 32 /dev/urandom | base64 -w0 > "$tmp/secrets/$(basename "$path")"
    done
    sed "s#/etc/guestgate/secrets/#$tmp/secrets/#g" "$tmp/guestgate.toml" > "$tmp/check.toml"
    if out=$("$GG" check --config "$tmp/check.toml" 2>&1); then
        ok "guestgate check on $K8S/configmap.yaml's guestgate.toml"
    else
        fail "guestgate check on $K8S/configmap.yaml's guestgate.toml"; echo "$out" | tail -20 | sed 's/^/    /'
    fi
    # and the check really reads the secrets: without one it must refuse (exit 2)
    victim=$(ls "$tmp/secrets" | head -1)
    [ -n "$victim" ] || { fail "configmap.yaml's guestgate.toml references no secret files"; victim=none; touch "$tmp/secrets/none"; }
    mv "$tmp/secrets/$victim" "$tmp/$victim.away"
    "$GG" check --config "$tmp/check.toml" >/dev/null 2>&1; rc=$?
    mv "$tmp/$victim.away" "$tmp/secrets/$victim"
    if [ "$rc" -eq 2 ]; then ok "guestgate check refuses the config when $victim is missing"
    else fail "guestgate check exit $rc (want 2) with $victim missing"; fi
    for ex in deploy/examples/relay.toml deploy/examples/genesys.toml; do
        if "$GG" check --config "$ex" >/dev/null 2>&1; then ok "guestgate check $ex"
        else fail "guestgate check $ex"; fi
    done
else
    fail "cargo build --bin guestgate"
    GG=
fi

# --- 4. systemd unit ---------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
    # verify wants ExecStart to exist: point a copy at the binary just built
    mkdir -p "$tmp/unit"
    sed "s#/usr/local/bin/guestgate#${GG:-/bin/true}#g" deploy/systemd/guestgate.service > "$tmp/unit/guestgate.service"
    if out=$(systemd-analyze verify "$tmp/unit/guestgate.service" 2>&1) && [ -z "$out" ]; then
        ok "systemd-analyze verify deploy/systemd/guestgate.service"
    else
        fail "systemd-analyze verify deploy/systemd/guestgate.service"; echo "$out" | sed 's/^/    /'
    fi
else
    echo "SKIP systemd-analyze not available: deploy/systemd/guestgate.service not verified"
fi

# --- 5. container recipe (no Docker engine here: static checks only) ----------------------
df=deploy/container/Dockerfile
if grep -q '^FROM rust:1-bookworm AS build' "$df" \
    && grep -q 'cargo build --release --locked --bin guestgate' "$df" \
    && grep -q '^FROM gcr.io/distroless/cc-debian12:nonroot' "$df" \
    && grep -q '^USER 65532' "$df" && grep -q '^EXPOSE 8080 9090' "$df"; then
    ok "$df (static; not built: no container engine in CI)"
else
    fail "$df static checks"
fi

echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
