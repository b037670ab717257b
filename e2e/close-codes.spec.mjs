// The chat page's handling of every close code guestgate sends, in Chromium, against a small
// stand-in server that serves src/demo_page/ as is and closes each WebSocket the way it is
// told: a readable notice for each code, reconnects only for the retryable ones.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { WebSocketServer } from "ws";
import { chromium } from "playwright-core";
import { ROOT } from "./demo.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PAGE_DIR = path.join(ROOT, "src", "demo_page");
const TYPES = { "/": "text/html", "/app.js": "text/javascript", "/style.css": "text/css" };

// code -> [words the notice must contain, whether the page reconnects by itself]
const CASES = {
  1000: [/closed/, false],
  1001: [/restarting/, true],
  1006: [/Connection lost/, true], // no close frame at all
  1008: [/not allowed/, false],
  1009: [/too big/, true],
  1011: [/internal error/, true],
  4400: [/refused the session/, false],
  4401: [/configuration problem/, false],
  4403: [/deploymentId and the allowed Origin/, false],
  4408: [/inactivity/, false],
  4429: [/busy/, true],
  4502: [/invalid response/, true],
  4503: [/Lost the connection/, true],
  4504: [/timed out/, true],
};

let server, wss, context, profile, base;
// What to do with each next WebSocket: "ready" (send SessionReady), a close code or "drop"
// (close at once), or { then: code | "drop" } (SessionReady, then close a moment later).
let plan = [];
let connections = [];
let texts = []; // onMessage Text requests received

before(async () => {
  server = http.createServer((req, res) => {
    const p = new URL(req.url, "http://x").pathname;
    if (!TYPES[p]) return res.writeHead(404).end();
    const file = p === "/" ? "index.html" : p.slice(1);
    res.writeHead(200, { "content-type": TYPES[p] }).end(readFileSync(path.join(PAGE_DIR, file)));
  });
  wss = new WebSocketServer({ server, path: "/ws" });
  wss.on("connection", (ws, req) => {
    connections.push(req.url);
    const step = plan.shift() ?? "ready";
    const end = (how) => (how === "drop" ? ws.terminate() : ws.close(how, "test"));
    if (step === "ready" || typeof step === "object") {
      const ticket = `ticket-${connections.length}`;
      ws.send(JSON.stringify({ type: "guestgate", class: "SessionReady", body: { resumeTicket: ticket, newSession: !req.url.includes("resume=") } }));
      if (step.then) setTimeout(() => end(step.then), 200);
    } else {
      end(step);
    }
    // A tiny Genesys: the first text gets a 429, later ones the echo and an agent reply.
    ws.on("message", (data) => {
      const m = JSON.parse(String(data));
      if (m.action !== "onMessage" || m.message?.type !== "Text") return;
      texts.push(m);
      const reply = (v) => ws.send(JSON.stringify({ ...v, tracingId: m.tracingId }));
      if (texts.length === 1) {
        return reply({ type: "response", class: "TooManyRequestsErrorMessage", code: 429, body: { retryAfter: 1, errorCode: 4029 } });
      }
      reply({ type: "message", class: "StructuredMessage", code: 200, body: { id: `in-${texts.length}`, direction: "Inbound", type: "Text", text: m.message.text } });
      ws.send(JSON.stringify({ type: "message", class: "StructuredMessage", code: 200, body: { id: `out-${texts.length}`, direction: "Outbound", type: "Text", text: `re: ${m.message.text}` } }));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${server.address().port}`;
  profile = mkdtempSync(path.join(os.tmpdir(), "guestgate-e2e-profile-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await context?.close().catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
  for (const c of wss?.clients ?? []) c.terminate();
  await new Promise((r) => (server ? server.close(r) : r()));
});

async function openWith(steps) {
  plan = steps;
  connections = [];
  texts = [];
  const page = await context.newPage(); // a new tab: empty sessionStorage
  page.setDefaultTimeout(10000);
  await page.goto(base + "/");
  return page;
}

const notice = (page) => page.locator('[data-testid="notice"]');

for (const [code, [words, retry]] of Object.entries(CASES)) {
  test(`close ${code}: notice, ${retry ? "reconnects" : "waits for the guest"}`, { timeout: 30000 }, async () => {
    const page = await openWith([{ then: code === "1006" ? "drop" : Number(code) }, "ready"]);
    try {
      await page.waitForSelector(`[data-testid="notice"][data-code="${code}"]`);
      const text = await page.locator('[data-testid="notice-text"]').textContent();
      assert.match(text, words, `notice for ${code}: ${text}`);
      if (retry) {
        await page.locator('[data-testid="note-resumed"]').waitFor();
        await page.waitForSelector('[data-testid="status"][data-state="online"]');
        assert.equal(connections.length, 2);
        assert.ok(connections[1].includes("resume=ticket-1"), "the reconnect carried the ticket");
      } else {
        await page.waitForTimeout(1500); // longer than the first backoff step (at most 0.5 s)
        assert.equal(connections.length, 1, `no automatic reconnect after ${code}`);
        assert.equal(await page.locator('[data-testid="status"]').getAttribute("data-state"), "offline");
        assert.ok(await page.locator('[data-testid="reconnect"]').isVisible(), "a Reconnect button");
        assert.equal(await notice(page).getAttribute("data-severity"), "error");
        await page.locator('[data-testid="reconnect"]').click();
        await page.waitForSelector('[data-testid="status"][data-state="online"]');
        assert.equal(connections.length, 2, "the Reconnect button reconnects");
      }
    } finally {
      await page.close();
    }
  });
}

test("close 4400 after a resume attempt: the ticket is dropped and a new conversation starts", { timeout: 30000 }, async () => {
  const page = await openWith([{ then: 4503 }, 4400, "ready"]);
  try {
    await page.locator('[data-testid="note-new"]').nth(1).waitFor(); // connection 3: fresh
    assert.ok(connections[1].includes("resume=ticket-1"), "connection 2 tried to resume");
    assert.ok(!connections[2].includes("resume="), "connection 3 started fresh");
    assert.match(await page.locator('[data-testid="note-new"]').nth(1).textContent(), /new conversation has started/);
    assert.equal(await page.locator('[data-testid="status"]').getAttribute("data-state"), "online");
  } finally {
    await page.close();
  }
});

test("a text answered with 429 is sent again after retryAfter, and shown once", { timeout: 30000 }, async () => {
  const page = await openWith(["ready"]);
  try {
    await page.waitForSelector('[data-testid="status"][data-state="online"]');
    await page.locator('[data-testid="input"]').fill("are you there?");
    await page.locator('[data-testid="input"]').press("Enter");
    await page.waitForSelector('[data-testid="notice"][data-code="429"]');
    await page.locator('[data-testid="msg-agent"]', { hasText: "re: are you there?" }).waitFor();
    assert.equal(texts.length, 2, "sent twice: the 429, then the retry");
    assert.ok(texts[1].tracingId && texts[1].tracingId !== texts[0].tracingId);
    assert.deepEqual(await page.locator('[data-testid="msg-guest"]').allTextContents(), ["are you there?"]);
  } finally {
    await page.close();
  }
});
