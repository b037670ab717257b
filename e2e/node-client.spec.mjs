// A plain Node.js `ws` client (no Authorization header, no token) chats through `guestgate demo`;
// the client is the one shown in docs/forum-answer.md, and this test checks the doc still
// quotes it verbatim.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { startDemo, ROOT } from "./demo.mjs";
import { chat } from "./node-client.mjs";

describe("through guestgate demo", () => {
  let demo;
  before(async () => {
    demo = await startDemo();
  });
  after(async () => {
    await demo?.stop();
  });

  test("a plain ws client without credentials gets the agent's reply", { timeout: 30000 }, async () => {
    const { session, reply, frames } = await chat(demo.urls.ws, "hello from node");
    assert.equal(typeof session?.resumeTicket, "string", "SessionReady carries a resumeTicket");
    assert.equal(session.newSession, true);
    assert.equal(frames[0].class, "SessionReady", "guestgate's SessionReady is the first frame");
    const echo = frames.find((f) => f.class === "StructuredMessage" && f.body.direction === "Inbound");
    assert.equal(echo?.body.text, "hello from node", "the upstream echoed the guest's message");
    assert.equal(reply, 'Agent: you said "hello from node"');
    for (const f of frames) assert.ok(!("token" in (f.body ?? {})), "no upstream token reaches the client");

    // The ticket continues the same conversation on a new connection.
    const again = await chat(demo.urls.ws, "still there?", { resumeTicket: session.resumeTicket });
    assert.equal(again.session.newSession, false, "resuming with the ticket reuses the session");
    assert.equal(again.reply, 'Agent: you said "still there?"');
  });
});

test("docs/forum-answer.md quotes e2e/node-client.mjs verbatim", () => {
  const doc = readFileSync(path.join(ROOT, "docs", "forum-answer.md"), "utf8");
  const code = readFileSync(path.join(ROOT, "e2e", "node-client.mjs"), "utf8");
  assert.ok(doc.includes("```js\n" + code + "```"), "update the example in docs/forum-answer.md");
});
