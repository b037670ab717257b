#!/usr/bin/env bash
# End-to-end tests of `guestgate demo` (the fake Genesys Web Messaging upstream behind the
# genesys-web-messaging preset) from the front-end developer's side, in e2e/:
#   - chat.spec.mjs: the demo chat page in Debian's headless Chromium driven by playwright-core:
#     send a message, see the agent's reply, drop the upstream leg with the demo's kill switch,
#     see the notice, the reconnect and the resumed conversation; screenshot target/e2e/chat.png
#   - messenger.spec.mjs: the same page through every Messenger feature: typing both ways, an
#     upload of a real file (progress, link, thumbnail, same bytes back), a reload with history,
#     an upstream drop while the agent writes (every note once, in order), a read-only end and
#     a new conversation; no session token or JWT in any frame, storage or cookie
#   - signin.spec.mjs: a signed-in customer on the same page: Sign in through the fake's
#     stand-in identity provider (code flow with PKCE; a guest conversation carried over),
#     chat, reload, Sign out (4411), the old ticket refused (4412); no session token, JWT or
#     refresh token in any frame, storage, cookie, URL or guestgate's output
#   - close-codes.spec.mjs: the same page against a stand-in server that closes with each code
#     guestgate sends: a readable notice for each, reconnects only for the retryable ones
#   - node-client.spec.mjs: a plain Node.js `ws` client without credentials (the example in
#     docs/forum-answer.md) gets the agent's reply.
#   - subprotocol.spec.mjs: Chromium offering Sec-WebSocket-Protocol through a route that lists
#     subprotocols: agreed end to end, or close 4406 the page can read.
# Installs Debian's chromium when /usr/bin/chromium is missing (needs root or sudo), runs
# `npm ci` in e2e/ (no browser download), builds guestgate (release) and prints
# `browser: N passed, M failed`. Usage: bash scripts/ci/browser.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

out=target/e2e
mkdir -p "$out"

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# Debian's launcher script prints a harmless shell warning on some machines; keep only the version.
/usr/bin/chromium --version 2>/dev/null | head -n 1

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "browser: node and npm are needed (Node.js >= 20)" >&2
  exit 1
fi
echo "node $(node --version)"
if [ ! -d e2e/node_modules/playwright-core ] || [ ! -d e2e/node_modules/ws ] ||
  [ e2e/package-lock.json -nt e2e/node_modules/.package-lock.json ]; then
  echo "npm ci in e2e/ (playwright-core without its browser download, ws)"
  (cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

echo "building guestgate (release)"
cargo build --release --quiet --bin guestgate
export GUESTGATE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/guestgate"

# timeout signals its whole process group, so the demo processes the tests started go too;
# Chromium (its own group) is closed by playwright-core's SIGTERM handler.
tap="$out/results.tap"
rm -f "$tap" "$out/chat.png" "$out/chat-failure.png"
status=0
timeout -k 10 300 node --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  e2e/chat.spec.mjs e2e/messenger.spec.mjs e2e/signin.spec.mjs e2e/close-codes.spec.mjs e2e/node-client.spec.mjs e2e/subprotocol.spec.mjs || status=$?

passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -n 1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -n 1)
cancelled=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$tap" 2>/dev/null | tail -n 1)
passed=${passed:-0}
# A test cancelled because its set-up failed (e.g. the demo did not start) counts as failed.
failed=$((${failed:-0} + ${cancelled:-0}))
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "browser: the tests did not finish within 300 s" >&2
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi
[ -f "$out/chat.png" ] && echo "browser: screenshot $PWD/$out/chat.png"
echo "browser: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
