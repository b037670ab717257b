// Every Messenger feature of the demo chat page in Debian's Chromium (playwright-core) against
// `guestgate demo`: typing both ways, an upload of a real file (progress bar, link, thumbnail,
// the same bytes back), a reload that shows history once, an upstream drop while the agent
// writes (every note exactly once, in order) and a read-only end followed by a new
// conversation. After each, no frame the page sent or received, nothing in its storage or
// cookies, holds a session token (the fake's, from the demo's /demo/secrets) or a JWT.
// Saves a screenshot of each story to target/e2e/messenger-*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import os from "node:os";
import zlib from "node:zlib";
import path from "node:path";
import { chromium } from "playwright-core";
import { startDemo, fetchWithin, ROOT } from "./demo.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.join(ROOT, "target", "e2e");
const WAIT = 10000; // every single wait in the page

let demo, context, profile, files, adminBase;
before(async () => {
  demo = await startDemo();
  adminBase = new URL(demo.urls.metrics).origin;
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/ci/browser.sh does)`);
  profile = mkdtempSync(path.join(os.tmpdir(), "guestgate-e2e-profile-"));
  files = mkdtempSync(path.join(os.tmpdir(), "guestgate-e2e-files-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    viewport: { width: 520, height: 760 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await context?.close().catch(() => {});
  for (const dir of [profile, files]) if (dir) rmSync(dir, { recursive: true, force: true });
  await demo?.stop();
});

const id = (page, testid) => page.locator(`[data-testid="${testid}"]`);

/** POST to one of the demo's admin buttons; returns the body text. */
async function admin(p) {
  const res = await fetchWithin(adminBase + p, { method: "POST" });
  assert.ok(res.ok, `POST ${p} answered ${res.status}`);
  return res.text();
}

/** A new tab (empty sessionStorage) on the chat page, recording its WebSocket traffic. */
async function openChat() {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const rec = { sockets: [], sent: [], received: [], errors: [] };
  page.on("pageerror", (e) => rec.errors.push(String(e)));
  page.on("websocket", (ws) => {
    rec.sockets.push(ws.url());
    ws.on("framesent", (f) => rec.sent.push(String(f.payload)));
    ws.on("framereceived", (f) => rec.received.push(String(f.payload)));
  });
  await page.goto(demo.urls.page, { timeout: WAIT });
  await online(page);
  return { page, rec };
}

const online = (page) => page.waitForSelector('[data-testid="status"][data-state="online"]', { timeout: 20000 });

async function say(page, text) {
  await id(page, "input").fill(text);
  await id(page, "input").press("Enter");
  await id(page, "msg-agent").filter({ hasText: `Agent: you said "${text}"` }).waitFor();
}

const parsed = (frames) => frames.map((f) => { try { return JSON.parse(f); } catch { return null; } }).filter(Boolean);

/** Runs a story in a fresh tab; on failure saves a screenshot and prints the traffic. */
async function story(name, body) {
  const { page, rec } = await openChat();
  try {
    await body(page, rec);
    await noSecrets(page, rec);
    assert.deepEqual(rec.errors, [], "no uncaught errors in the page");
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `messenger-${name}.png`) });
  } catch (e) {
    mkdirSync(SHOTS, { recursive: true });
    const shot = path.join(SHOTS, `messenger-${name}-failure.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    console.log(`failure screenshot: ${shot}`);
    console.log(`websockets: ${rec.sockets.join(" ")}\nsent: ${rec.sent.join(" | ")}\nreceived: ${rec.received.join(" | ")}`);
    console.log(`demo output:\n${demo.output().replace(/^/gm, "  ")}`);
    throw e;
  } finally {
    await page.close();
  }
}

/** No session token, no `token` field and no JWT in any frame, the page's storage or cookies. */
async function noSecrets(page, rec) {
  const { sessionTokens } = JSON.parse(await admin("/demo/secrets"));
  assert.ok(sessionTokens.length >= 1, "the fake saw session tokens to look for");
  const stored = await page.evaluate(() => JSON.stringify({
    session: Object.entries(sessionStorage), local: Object.entries(localStorage), cookie: document.cookie,
  }));
  const cookies = JSON.stringify(await context.cookies());
  const jwt = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;
  const places = [...rec.received.map((f) => ["received", f]), ...rec.sent.map((f) => ["sent", f]),
    ["storage", stored], ["cookies", cookies], ["urls", rec.sockets.join(" ")]];
  assert.ok(rec.received.length > 0 && rec.sent.length > 0, "frames were recorded");
  for (const [where, text] of places) {
    for (const t of sessionTokens) assert.ok(!text.includes(t), `a session token in ${where}: ${text.slice(0, 200)}`);
    assert.ok(!jwt.test(text), `a JWT in ${where}: ${text.slice(0, 200)}`);
    if (where === "received" || where === "sent") assert.ok(!/"token"\s*:/.test(text), `a token field ${where}: ${text}`);
  }
}

/** Records every state an element's attribute takes (window.__seen[key]). */
async function watch(page, testid, attr, key) {
  await page.evaluate(([testid, attr, key]) => {
    const el = document.querySelector(`[data-testid="${testid}"]`);
    const seen = ((window.__seen ||= {})[key] = []);
    new MutationObserver(() => seen.push(el.getAttribute(attr)))
      .observe(el, { attributes: true, attributeFilter: [attr] });
  }, [testid, attr, key]);
}
const seenStates = (page, key) => page.evaluate((key) => window.__seen[key], key);

/** A w x h RGB PNG with a colour gradient. */
function png(w, h) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const head = Buffer.alloc(13);
  head.writeUInt32BE(w, 0);
  head.writeUInt32BE(h, 4);
  head.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + 3 * w); // filter byte 0, then pixels
    for (let x = 0; x < w; x++) row.set([47 + (x * 2), 111, 237 - y * 2], 1 + 3 * x);
    rows.push(row);
  }
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", head),
    chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}

test("typing both ways: the agent's indicator shows, the page's typing reaches Genesys", { timeout: 60000 }, async () => {
  await story("typing", async (page, rec) => {
    const before = JSON.parse(await admin("/demo/stats")).typingEvents;
    await watch(page, "typing", "hidden", "typing");
    await id(page, "input").fill("is anyone typing?"); // one input event: the page sends typing
    await id(page, "input").press("Enter");
    await id(page, "msg-agent").filter({ hasText: 'Agent: you said "is anyone typing?"' }).waitFor();
    // The indicator was shown (hidden removed), then hidden by the reply.
    const states = await seenStates(page, "typing");
    assert.ok(states.includes(null), `the agent's typing indicator never showed: ${JSON.stringify(states)}`);
    assert.equal(await id(page, "typing").isHidden(), true, "the reply hides the indicator");
    const agentTyping = parsed(rec.received).filter((m) => m.body?.direction === "Outbound" &&
      m.body?.events?.some((e) => e.eventType === "Typing"));
    assert.equal(agentTyping.length, 1, "one agent typing event for one text");
    const sentTyping = parsed(rec.sent).filter((m) => m.message?.events?.some((e) => e.eventType === "Typing"));
    assert.equal(sentTyping.length, 1, "the page sent its typing once");
    let after;
    for (const deadline = Date.now() + WAIT; Date.now() < deadline;) {
      after = JSON.parse(await admin("/demo/stats")).typingEvents;
      if (after > before) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(after, before + 1, "the fake Genesys received the page's typing event");
  });
});

test("upload: a real file, progress to 100 %, a link and a thumbnail that give the same bytes", { timeout: 60000 }, async () => {
  // A 96x64 PNG followed by 1.5 MB of random bytes (decoders stop at IEND).
  const bytes = Buffer.concat([png(96, 64), randomBytes(1536 * 1024)]);
  const file = path.join(files, "photo.png");
  writeFileSync(file, bytes);
  await story("upload", async (page, rec) => {
    await id(page, "attach").waitFor(); // shown once SessionReady lists allowed types
    await watch(page, "upload-progress", "value", "progress");
    await id(page, "file").setInputFiles(file);
    await page.waitForSelector('[data-testid="upload"][data-state="done"]');
    assert.equal(await id(page, "upload-progress").evaluate((p) => p.value), 100);
    const values = (await seenStates(page, "progress")).map(Number);
    assert.equal(Math.max(...values), 100, `progress values: ${values}`);
    const link = id(page, "msg-guest").locator('[data-testid="attachment-link"]');
    await link.waitFor();
    assert.equal(await link.count(), 1, "the transcript shows one link");
    assert.match(await link.textContent(), /photo\.png/);
    const thumb = link.locator('[data-testid="attachment-thumb"]');
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await thumb.elementHandle());
    assert.deepEqual(await thumb.evaluate((img) => [img.naturalWidth, img.naturalHeight]), [96, 64], "the thumbnail is the uploaded PNG");
    const href = await link.getAttribute("href");
    const got = Buffer.from(await (await fetchWithin(href)).arrayBuffer());
    assert.equal(got.length, bytes.length, "download length");
    assert.ok(got.equals(bytes), "the link gives back the bytes the test wrote");
    const { uploads } = JSON.parse(await admin("/demo/stats"));
    assert.ok(uploads.some((u) => u.bytes === bytes.length), `the fake stored the upload: ${JSON.stringify(uploads)}`);
    // The page asked for the slot without credentials and sent the message that carries it.
    const asked = parsed(rec.sent).find((m) => m.action === "onAttachment");
    assert.deepEqual([asked.fileName, asked.fileType, asked.fileSize], ["photo.png", "image/png", bytes.length]);
    assert.ok(parsed(rec.sent).some((m) => m.message?.content?.[0]?.attachment?.id === asked.attachmentId));
  });
});

test("reload: the earlier messages come back from history, each exactly once, in order", { timeout: 60000 }, async () => {
  await story("reload", async (page, rec) => {
    for (const t of ["first", "second", "third"]) await say(page, t);
    const shown = () => page.$$eval('[data-testid^="msg-"]', (els) => els.map((e) => e.dataset.id + " " + e.textContent));
    const before = await shown();
    assert.equal(before.length, 6);
    await page.reload({ timeout: WAIT });
    await online(page);
    await id(page, "note-resumed").waitFor();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid^="msg-"]').length >= n, 6);
    await page.waitForTimeout(1500); // anything doubled would have arrived by now
    assert.deepEqual(await shown(), before, "history shows every earlier message once, oldest first");
    assert.ok(rec.sockets.at(-1).includes("?resume=") && rec.sockets.at(-1).includes("&after="), `reload reconnects with the ticket and after=: ${rec.sockets.at(-1)}`);
    assert.ok(parsed(rec.sent).some((m) => m.action === "guestgate.getHistory"), "the page asked for history");
    assert.ok(parsed(rec.received).some((m) => m.type === "guestgate" && m.class === "History"), "guestgate answered with History");
    await say(page, "after reload");
    const guest = await id(page, "msg-guest").allTextContents();
    assert.deepEqual(guest, ["first", "second", "third", "after reload"]);
  });
});

test("upstream drop while the agent writes: every note arrives exactly once, in order", { timeout: 90000 }, async () => {
  await story("drop", async (page, rec) => {
    await say(page, "ready for notes");
    await watch(page, "notice", "data-code", "notice");
    const answer = await admin("/demo/agent-writes");
    const [, first, last] = answer.match(/agent note (\d+) to (\d+)/).map(Number);
    const notes = () => id(page, "msg-agent").filter({ hasText: /agent note \d+/ }).allTextContents();
    await id(page, "msg-agent").filter({ hasText: `agent note ${first + 2}` }).waitFor();
    assert.match(await admin("/demo/drop-upstream"), /dropped [1-9]\d* upstream sockets/);
    const atDrop = (await notes()).length;
    assert.ok(atDrop < last - first + 1, "the drop came while the agent was still writing");
    await page.waitForFunction(() => window.__seen.notice.includes("4503"), null, { timeout: WAIT });
    await id(page, "msg-agent").filter({ hasText: `agent note ${last}` }).waitFor({ timeout: 30000 });
    await page.waitForTimeout(1000); // a doubled note would have arrived by now
    const want = [];
    for (let n = first; n <= last; n++) want.push(`agent note ${n}`);
    assert.deepEqual((await notes()).map((t) => t.replace(/^Agent/, "")), want, "every note once, in order");
    assert.ok(rec.sockets.length >= 2, "the page reconnected");
    assert.match(rec.sockets.at(-1), /\?resume=[^&]+&after=[0-9a-f-]{36}$/, "the reconnect carries the ticket and after=");
    const done = parsed(rec.received).filter((m) => m.type === "guestgate" && m.class === "ReplayDone");
    assert.ok(done.length >= 1 && done.every((m) => m.body.complete), `replays: ${JSON.stringify(done)}`);
    console.log(`notes ${first}..${last}: ${atDrop} shown at the drop, ${done.map((m) => m.body.count).join("+")} replayed after it`);
  });
});

test("read-only end: the agent leaves, the page starts a new conversation", { timeout: 60000 }, async () => {
  await story("ended", async (page, rec) => {
    await say(page, "bye soon");
    const oldTicket = await page.evaluate(() => sessionStorage.getItem("guestgate.resumeTicket"));
    assert.match(await admin("/demo/agent-disconnect"), /the agent ended [1-9]\d* conversations/);
    await id(page, "ended").waitFor();
    assert.equal(await id(page, "ended-text").textContent(), "The agent ended the conversation.");
    assert.ok(await id(page, "input").isDisabled(), "no sending into a read-only conversation");
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, "messenger-ended-banner.png") });
    await id(page, "start-new").click();
    await id(page, "note-new").filter({ hasText: "A new conversation has started." }).waitFor();
    assert.ok(await id(page, "ended").isHidden());
    assert.equal(await id(page, "msg-guest").count(), 0, "the transcript starts empty");
    assert.ok(parsed(rec.sent).some((m) => m.action === "guestgate.startNew"));
    const newTicket = await page.evaluate(() => sessionStorage.getItem("guestgate.resumeTicket"));
    assert.ok(newTicket && newTicket !== oldTicket, "the new SessionReady's ticket is stored");
    await say(page, "hello again");
    // A reload resumes the new conversation: its history holds nothing of the old one.
    await page.reload({ timeout: WAIT });
    await online(page);
    await id(page, "msg-agent").filter({ hasText: 'Agent: you said "hello again"' }).waitFor();
    await page.waitForTimeout(1000);
    assert.deepEqual(await id(page, "msg-guest").allTextContents(), ["hello again"]);
    assert.ok(await id(page, "ended").isHidden(), "the new conversation is not read-only");
  });
});
