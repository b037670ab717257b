// A signed-in customer on the demo chat page in Debian's Chromium (playwright-core) against
// `guestgate demo`: chat as a guest, "Sign in" through the fake's stand-in identity provider
// (OIDC code flow with PKCE), the guest conversation carried over, chat, reload (still signed
// in, each message once), "Sign out" (close 4411, signed-out page), and the old ticket refused
// (close 4412, "please sign in again"). Then no session token, JWT or refresh token the fake
// handed out (from the demo's /demo/secrets), and nothing JWT-shaped, is in any frame the page
// sent or received, its storage, its cookies, any URL it loaded, or guestgate's output.
// Saves a screenshot to target/e2e/signin.png.
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
const TICKET_KEY = "guestgate.resumeTicket";

let demo, context, profile, adminBase;
before(async () => {
  demo = await startDemo();
  adminBase = new URL(demo.urls.metrics).origin;
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
});
after(async () => {
  await context?.close().catch(() => {});
  if (profile) rmSync(profile, { recursive: true, force: true });
  await demo?.stop();
});

const id = (page, testid) => page.locator(`[data-testid="${testid}"]`);
const online = (page) => page.waitForSelector('[data-testid="status"][data-state="online"]', { timeout: 20000 });

async function say(page, text) {
  await id(page, "input").fill(text);
  await id(page, "input").press("Enter");
  await id(page, "msg-agent").filter({ hasText: `Agent: you said "${text}"` }).waitFor();
}

/** The texts of the guest's and the agent's messages shown, in order. */
const transcript = (page) => page.locator('[data-testid="msg-guest"], [data-testid="msg-agent"]').allTextContents();

const signedInAs = (page) =>
  page.waitForSelector('[data-testid="account"][data-state="signed-in"]:not([hidden])', { timeout: 20000 });

test("sign in, chat, reload, sign out: no JWT, refresh token or session token reaches the page", { timeout: 120000 }, async () => {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const rec = { sockets: [], sent: [], received: [], urls: [], errors: [] };
  page.on("pageerror", (e) => rec.errors.push(String(e)));
  page.on("request", (r) => rec.urls.push(r.url()));
  page.on("framenavigated", (f) => rec.urls.push(f.url()));
  page.on("websocket", (ws) => {
    rec.sockets.push(ws.url());
    ws.on("framesent", (f) => rec.sent.push(String(f.payload)));
    ws.on("framereceived", (f) => rec.received.push(String(f.payload)));
  });
  try {
    // A guest first: the Sign in button is offered.
    await page.goto(demo.urls.page, { timeout: WAIT });
    await online(page);
    await page.waitForSelector('[data-testid="account"][data-state="guest"]:not([hidden])');
    assert.equal(await id(page, "account-text").textContent(), "Chatting as a guest");
    assert.ok(await id(page, "sign-out").isHidden());
    await say(page, "hello as a guest");

    // Sign in on the identity provider's page (PKCE: an S256 challenge, never the verifier).
    await id(page, "sign-in").click();
    await page.waitForURL(/\/idp\/authorize\?/);
    const authorize = new URL(page.url());
    assert.equal(authorize.searchParams.get("code_challenge_method"), "S256");
    assert.match(authorize.searchParams.get("code_challenge") ?? "", /^[A-Za-z0-9_-]{43}$/);
    assert.equal(authorize.searchParams.get("redirect_uri"), demo.urls.page);
    assert.ok(!authorize.searchParams.has("code_verifier"));
    await id(page, "idp-sign-in").click();
    await page.waitForURL((u) => u.href.startsWith(demo.urls.page) && !u.href.includes("idp"));
    await signedInAs(page);
    await online(page);
    assert.equal(await id(page, "account-text").textContent(), "Signed in as Alex");
    assert.equal(page.url(), demo.urls.page, "code and state left the address bar");
    assert.ok(await id(page, "sign-in").isHidden());
    const signInFrame = rec.sent.map((f) => JSON.parse(f)).find((m) => m.action === "signIn");
    assert.ok(signInFrame && signInFrame.type === "guestgate" && signInFrame.code && signInFrame.codeVerifier);
    assert.ok(signInFrame.ticket, "the guest ticket went along, to upgrade");
    assert.ok(rec.sockets.some((u) => u.endsWith("/ws?signin=first-frame")), rec.sockets.join(" "));
    const stored = await page.evaluate(() => Object.keys(sessionStorage));
    assert.ok(!stored.includes("guestgate.signInStarted"), "the verifier is gone once used");
    // The guest conversation carried over (from history).
    await id(page, "msg-agent").filter({ hasText: "hello as a guest" }).waitFor();

    await say(page, "hello signed in");
    const before = await transcript(page);
    assert.equal(before.filter((t) => t.includes("hello signed in")).length, 2, before.join(" | "));

    // A reload: still signed in, the conversation shown once.
    await page.reload({ timeout: WAIT });
    await online(page);
    await signedInAs(page);
    await id(page, "note-resumed").waitFor();
    await id(page, "msg-agent").filter({ hasText: "hello signed in" }).waitFor();
    await page.waitForTimeout(500); // room for a duplicate to show up
    const after = await transcript(page);
    for (const t of ["hello as a guest", "hello signed in"]) { // the guest's text and the reply
      assert.equal(after.filter((x) => x.includes(t)).length, 2, `"${t}" once: ${after.join(" | ")}`);
    }
    const ticket = await page.evaluate((k) => sessionStorage.getItem(k), TICKET_KEY);
    assert.ok(ticket, "a signed-in ticket");

    // The fake forgets a customer's JWTs when the refresh token is revoked: list them now.
    const signedInSecrets = await secrets();
    assert.ok(signedInSecrets.authSecrets.length >= 3,
      `the JWT, the refresh token and the JWT the reload's refresh got: ${signedInSecrets.authSecrets.length}`);

    // Sign out: close 4411, the signed-out page, no ticket, no transcript.
    await id(page, "sign-out").click();
    await page.waitForSelector('[data-testid="notice"][data-code="4411"]');
    await page.waitForSelector('[data-testid="account"][data-state="guest"]');
    assert.match(await id(page, "ended-text").textContent(), /You signed out/);
    assert.ok(await id(page, "sign-in").isVisible());
    assert.ok(await id(page, "sign-out").isHidden());
    assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), TICKET_KEY), null);
    assert.deepEqual(await transcript(page), []);
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, "signin.png") });

    // The signed-out ticket resumes nothing: close 4412, "please sign in again".
    await page.evaluate(([k, t]) => sessionStorage.setItem(k, t), [TICKET_KEY, ticket]);
    await page.reload({ timeout: WAIT });
    await page.waitForSelector('[data-testid="notice"][data-code="4412"]');
    assert.match(await id(page, "notice-text").textContent(), /please sign in again/);
    assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), TICKET_KEY), null);

    await noSecrets(page, rec, signedInSecrets);
    assert.deepEqual(rec.errors, [], "no uncaught errors in the page");
  } catch (e) {
    mkdirSync(SHOTS, { recursive: true });
    const shot = path.join(SHOTS, "signin-failure.png");
    await page.screenshot({ path: shot }).catch(() => {});
    console.log(`failure screenshot: ${shot}`);
    console.log(`websockets: ${rec.sockets.join(" ")}\nsent: ${rec.sent.join(" | ")}\nreceived: ${rec.received.join(" | ")}`);
    console.log(`demo output:\n${demo.output().replace(/^/gm, "  ")}`);
    throw e;
  } finally {
    await page.close();
  }
});

/** The demo's /demo/secrets: { sessionTokens, jwts, authSecrets }. */
async function secrets() {
  const res = await fetchWithin(adminBase + "/demo/secrets", { method: "POST" });
  assert.ok(res.ok, `POST /demo/secrets answered ${res.status}`);
  return res.json();
}

/** No credential the fake handed out (now, or in `earlier`), and nothing JWT-shaped, anywhere
 * the page can reach. */
async function noSecrets(page, rec, earlier) {
  const now = await secrets();
  assert.ok(now.sessionTokens.length >= 1, "the fake saw session tokens to look for");
  const all = new Set();
  for (const list of [now, earlier]) for (const k of ["sessionTokens", "jwts", "authSecrets"]) for (const s of list[k]) all.add(s);
  assert.ok(all.size >= 5, `secrets to look for: ${all.size}`);
  const listed = [...all];
  const stored = await page.evaluate(() => JSON.stringify({
    session: Object.entries(sessionStorage), local: Object.entries(localStorage), cookie: document.cookie,
  }));
  const cookies = JSON.stringify(await context.cookies());
  const jwt = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;
  const places = [...rec.received.map((f) => ["received", f]), ...rec.sent.map((f) => ["sent", f]),
    ["storage", stored], ["cookies", cookies], ["urls", [...rec.sockets, ...rec.urls].join(" ")],
    ["guestgate's output", demo.output()]];
  assert.ok(rec.received.length > 0 && rec.sent.length > 0, "frames were recorded");
  for (const [where, text] of places) {
    for (const s of listed) assert.ok(!text.includes(s), `a secret in ${where}: ${text.slice(0, 200)}`);
    assert.ok(!jwt.test(text), `a JWT in ${where}: ${text.slice(0, 200)}`);
    if (where === "received" || where === "sent") assert.ok(!/"token"\s*:/.test(text), `a token field ${where}: ${text}`);
  }
}
