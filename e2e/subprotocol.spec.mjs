// Subprotocols in a real browser: Chromium fails a handshake that offers protocols and gets
// none back, so guestgate must agree on one end to end, or complete the handshake and close
// with a code the page can read (4406). guestgate serves a plain route with
// `subprotocols = ["graphql-transport-ws"]` in front of a Node `ws` echo that selects what it
// is asked for and reports it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { WebSocketServer } from "ws";
import { chromium } from "playwright-core";
import { BIN } from "./demo.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let upstream, asked = [], gg, ggOut = "", dir, context, wsUrl;

before(async () => {
  upstream = new WebSocketServer({
    host: "127.0.0.1",
    port: 0,
    handleProtocols: (protocols) =>
      protocols.has("graphql-transport-ws") ? "graphql-transport-ws" : false,
  });
  upstream.on("connection", (ws, req) => {
    // What guestgate asked this upstream for (the header is absent when it asked for none).
    asked.push(req.headers["sec-websocket-protocol"] ?? null);
    ws.on("message", (data, binary) => ws.send(data, { binary }));
  });
  await new Promise((r) => upstream.once("listening", r));

  dir = mkdtempSync(path.join(os.tmpdir(), "guestgate-e2e-subprotocol-"));
  const config = path.join(dir, "guestgate.toml");
  writeFileSync(config, `[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[[routes]]
name = "graphql"
path = "/graphql"
upstream = "ws://127.0.0.1:${upstream.address().port}/"
subprotocols = ["graphql-transport-ws"]
edge.allow_any_origin = true
`);
  assert.ok(existsSync(BIN), `${BIN} is missing: cargo build --release --bin guestgate`);
  gg = spawn(BIN, ["--log-format", "text", "serve", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  const strip = (d) => d.replace(/\x1b\[[0-9;]*m/g, "");
  gg.stdout.setEncoding("utf8").on("data", (d) => (ggOut += strip(d)));
  gg.stderr.setEncoding("utf8").on("data", (d) => (ggOut += strip(d)));
  const deadline = Date.now() + 20000;
  for (;;) {
    const m = ggOut.match(/guestgate is serving.*?listen=(127\.0\.0\.1:\d+)/);
    if (m) {
      wsUrl = `ws://${m[1]}/graphql`;
      break;
    }
    if (gg.exitCode !== null || Date.now() > deadline) {
      throw new Error(`guestgate did not start: ${ggOut}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/ci/browser.sh does)`);
  context = await chromium.launchPersistentContext(path.join(dir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await context?.close();
  gg?.kill("SIGTERM");
  upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Opens a WebSocket in the page with `protocols`, sends "ping", reports what happened. */
async function tryIn(page, protocols) {
  return page.evaluate(
    ([url, protocols]) =>
      new Promise((resolve) => {
        const ws = protocols === null ? new WebSocket(url) : new WebSocket(url, protocols);
        const result = { opened: false, protocol: null, echo: null, code: null, reason: null };
        const done = setTimeout(() => resolve({ ...result, timedOut: true }), 10000);
        ws.onopen = () => {
          result.opened = true;
          result.protocol = ws.protocol;
          ws.send("ping");
        };
        ws.onmessage = (e) => {
          result.echo = e.data;
          ws.close(1000);
        };
        ws.onclose = (e) => {
          result.code = e.code;
          result.reason = e.reason;
          clearTimeout(done);
          resolve(result);
        };
      }),
    [wsUrl, protocols],
  );
}

test("the protocol the route accepts is agreed with Chromium and with the upstream", { timeout: 60000 }, async () => {
  const page = await context.newPage();
  asked = [];
  const r = await tryIn(page, ["mqtt", "graphql-transport-ws"]);
  assert.equal(r.opened, true, JSON.stringify(r));
  assert.equal(r.protocol, "graphql-transport-ws");
  assert.equal(r.echo, "ping");
  assert.equal(r.code, 1000);
  assert.deepEqual(asked, ["graphql-transport-ws"], "the upstream was asked for exactly the agreed one");
});

test("no offer: no protocol on either leg", { timeout: 60000 }, async () => {
  const page = await context.newPage();
  asked = [];
  const r = await tryIn(page, null);
  assert.equal(r.protocol, "");
  assert.equal(r.echo, "ping");
  assert.deepEqual(asked, [null], "the upstream was asked for no protocol");
});

test("nothing in common: Chromium completes the handshake and reads close 4406", { timeout: 60000 }, async () => {
  const page = await context.newPage();
  asked = [];
  const r = await tryIn(page, ["mqtt"]);
  assert.equal(r.opened, true, JSON.stringify(r));
  assert.equal(r.code, 4406);
  assert.equal(r.reason, "no subprotocol in common with this route");
  assert.equal(r.echo, null);
  assert.deepEqual(asked, [], "no upstream connection was opened");
});
