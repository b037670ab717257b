#!/usr/bin/env bash
# A real Prometheus against guestgate: installs Debian's `prometheus` package when the binaries
# are missing, checks and unit-tests the alert rules in deploy/monitoring/, checks that the
# Grafana dashboard is JSON, then runs tests/prometheus_scrape.rs, in which Prometheus scrapes
# an in-process guestgate on loopback and the test asserts on its query API.
# Usage: bash scripts/ci/prometheus.sh   (run by scripts/test.sh; installing needs root)
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "installing Debian's prometheus package (only its binaries are used; no service is started)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # policy-rc.d stops invoke-rc.d from starting the packaged service where an init system
  # exists; without one (containers, CI) it is harmless.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
prometheus --version 2>&1 | head -n 1

echo "promtool check rules"
promtool check rules deploy/monitoring/alerts.yml

echo "promtool test rules"
promtool test rules deploy/monitoring/alerts_test.yml

echo "dashboard JSON"
if command -v python3 >/dev/null 2>&1; then
  python3 -m json.tool deploy/monitoring/grafana-dashboard.json >/dev/null
  echo "  deploy/monitoring/grafana-dashboard.json parses"
else
  echo "  no python3: the scrape test below parses the dashboard instead"
fi

echo "Prometheus scrapes a running guestgate"
GUESTGATE_REQUIRE_PROMETHEUS=1 cargo test --quiet --test prometheus_scrape -- --nocapture
