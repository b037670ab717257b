// The demo chat page in Debian's Chromium, driven by playwright-core: chat with the fake agent,
// drop the upstream leg with the demo's kill switch, see the notice, the reconnect and the
// resumed conversation. Saves a screenshot to target/e2e/chat.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startDemo, fetchWithin, ROOT } from "./demo.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.join(ROOT, "target", "e2e");
const WAIT = 10000; // every single wait in the page

let demo, context, profile;
before(async () => {
  demo = await startDemo();
});
after(async () => {
  await context?.close().catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
  await demo?.stop();
});

const id = (page, testid) => page.locator(`[data-testid="${testid}"]`);

test("chat page: reply, upstream drop, notice, reconnect, resumed conversation", { timeout: 90000 }, async () => {
  const res = await fetchWithin(demo.urls.page);
  const type = res.headers.get("content-type") || "";
  assert.ok(res.ok && type.startsWith("text/html"), `GET ${demo.urls.page} answered ${res.status} ${type}: the demo does not serve the chat page`);

  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/ci/browser.sh does)`);
  profile = mkdtempSync(path.join(os.tmpdir(), "guestgate-e2e-profile-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    viewport: { width: 520, height: 760 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(WAIT);
  const pageErrors = [], sockets = [], sent = [], received = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("websocket", (ws) => {
    sockets.push(ws.url());
    ws.on("framesent", (f) => sent.push(String(f.payload)));
    ws.on("framereceived", (f) => received.push(String(f.payload)));
  });

  try {
    await page.goto(demo.urls.page, { timeout: WAIT });
    await page.waitForSelector('[data-testid="status"][data-state="online"]');
    await id(page, "note-new").waitFor();

    // 1. A message and the agent's reply; the guest's bubble is the upstream's Inbound echo.
    await id(page, "input").fill("hello from chromium");
    await id(page, "send").click();
    await id(page, "msg-agent").filter({ hasText: 'Agent: you said "hello from chromium"' }).waitFor();
    await id(page, "typing").waitFor({ state: "hidden" });
    assert.equal(await id(page, "msg-guest").filter({ hasText: "hello from chromium" }).count(), 1, "the guest's message shows once");
    const ticket = await page.evaluate(() => sessionStorage.getItem("guestgate.resumeTicket"));
    assert.ok(ticket, "the page stored the resume ticket");

    // 2. Drop the upstream leg; record every notice the banner shows from now on.
    await page.evaluate(() => {
      const n = document.querySelector('[data-testid="notice"]');
      window.__notices = [];
      const seen = () => !n.hidden && window.__notices.push({ code: n.dataset.code, text: n.querySelector('[data-testid="notice-text"]').textContent });
      new MutationObserver(seen).observe(n, { attributes: true, childList: true, subtree: true, characterData: true });
    });
    const kill = await fetchWithin(demo.urls.killSwitch, { method: "POST" });
    assert.ok(kill.ok, `POST ${demo.urls.killSwitch} answered ${kill.status}`);
    await page.waitForFunction(() => window.__notices.some((n) => n.code === "4503"), null, { timeout: WAIT });
    const notices = await page.evaluate(() => window.__notices);
    const lost = notices.find((n) => n.code === "4503");
    assert.match(lost.text, /Lost the connection to the chat service/);
    console.log(`notice after the upstream drop: ${lost.code} "${lost.text}"`);

    // 3. The page reconnects by itself with the ticket and the conversation resumes.
    await id(page, "note-resumed").waitFor({ timeout: 20000 });
    await page.waitForSelector('[data-testid="status"][data-state="online"]');
    assert.ok(sockets.length >= 2, `the page reconnected (sockets: ${sockets.join(", ")})`);
    assert.ok(sockets.at(-1).includes("?resume="), `the reconnect carries the ticket: ${sockets.at(-1)}`);
    assert.ok(!sockets[0].includes("?resume="), "the first connection had no ticket");
    assert.equal(await id(page, "msg-guest").filter({ hasText: "hello from chromium" }).count(), 1, "earlier guest message kept");
    assert.equal(await id(page, "msg-agent").filter({ hasText: "hello from chromium" }).count(), 1, "earlier agent reply kept");

    // 4. The resumed conversation goes on.
    await id(page, "input").fill("back again");
    await id(page, "send").click();
    await id(page, "msg-agent").filter({ hasText: 'Agent: you said "back again"' }).waitFor();
    // The picture shows the whole story: reply, disconnect, resumed, reply.
    mkdirSync(SHOTS, { recursive: true });
    const shot = path.join(SHOTS, "chat.png");
    await page.screenshot({ path: shot });
    console.log(`screenshot: ${shot}`);

    // A burst over the upstream's 2 messages/s: the page paces it, nothing is lost or doubled.
    for (const word of ["one", "two", "three", "four"]) {
      await id(page, "input").fill(word);
      await id(page, "input").press("Enter");
    }
    await id(page, "msg-agent").filter({ hasText: 'Agent: you said "four"' }).waitFor();
    const guest = await id(page, "msg-guest").allTextContents();
    assert.deepEqual(guest, ["hello from chromium", "back again", "one", "two", "three", "four"]);
    await id(page, "notice").waitFor({ state: "hidden" });

    // 5. A reload keeps the conversation: the ticket is in sessionStorage, the transcript comes
    // back from history.
    await page.reload({ timeout: WAIT });
    await id(page, "note-resumed").waitFor();
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="msg-guest"]').length >= n, guest.length);
    assert.deepEqual(await id(page, "msg-guest").allTextContents(), guest, "transcript back after a reload");
    await id(page, "input").fill("after reload");
    await id(page, "input").press("Enter");
    await id(page, "msg-agent").filter({ hasText: 'Agent: you said "after reload"' }).waitFor();

    // 6. No credential went through the page.
    for (const f of sent) {
      const m = JSON.parse(f);
      assert.ok(!("token" in m) && m.action !== "configureSession", `the page sent ${f}`);
    }
    for (const f of received) {
      assert.ok(!/"token"\s*:/.test(f), `the page received a token: ${f}`);
    }
    assert.deepEqual(pageErrors, [], "no uncaught errors in the page");

    const metrics = await (await fetchWithin(demo.urls.metrics)).text();
    const resumed = metrics.split("\n").filter((l) => l.startsWith("guestgate_resume_attempts_total"));
    console.log(resumed.join("\n") || "no guestgate_resume_attempts_total in /metrics");
  } catch (e) {
    mkdirSync(SHOTS, { recursive: true });
    const shot = path.join(SHOTS, "chat-failure.png");
    await page.screenshot({ path: shot }).catch(() => {});
    console.log(`failure screenshot: ${shot}`);
    console.log(`websockets: ${sockets.join(" ")}\nsent: ${sent.join(" | ")}\nreceived: ${received.join(" | ")}`);
    console.log(`demo output:\n${demo.output().replace(/^/gm, "  ")}`);
    throw e;
  }
});
