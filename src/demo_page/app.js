// guestgate demo chat: a plain WebSocket to guestgate's /ws, speaking Genesys Web Messaging
// request shapes without `token` (guestgate configures the session and adds the token upstream).
"use strict";
(() => {
  const TICKET_KEY = "guestgate.resumeTicket";
  const TRANSCRIPT_KEY = "guestgate.transcript";
  const KEEPALIVE_MS = 30000; // app-level echo at most this often (Genesys's SDK does the same)
  const TYPING_EVERY_MS = 5000;
  const MESSAGES_PER_SEC = 2, WINDOW_MS = 1100; // Genesys: 2 onMessage/s per session (typing too)
  const BACKOFF_MIN_MS = 500, BACKOFF_MAX_MS = 15000;
  // Close code -> [what the guest reads, whether to reconnect by itself].
  const CLOSES = {
    1000: ["The chat was closed.", false],
    1001: ["guestgate is restarting. Reconnecting…", true],
    1002: ["The connection broke the WebSocket protocol. Reconnecting…", true],
    1006: ["Connection lost. Reconnecting…", true],
    1008: ["A message was not allowed by the chat server's policy.", false],
    1009: ["That message was too big to send. Reconnecting…", true],
    1011: ["guestgate hit an internal error. Reconnecting…", true],
    4400: ["The chat service refused the session.", false],
    4401: ["guestgate could not sign in to the chat service. This is a configuration problem: please tell the site owner.", false],
    4403: ["The chat service rejected this site (check the deploymentId and the allowed Origin).", false],
    4408: ["Disconnected after a period of inactivity.", false],
    4429: ["The chat service is busy right now. Retrying shortly…", true],
    4502: ["The chat service sent an invalid response. Reconnecting…", true],
    4503: ["Lost the connection to the chat service. Reconnecting…", true],
    4504: ["The chat service timed out. Reconnecting…", true],
  };

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const list = $("messages"), input = $("input"), form = $("composer"), status = $("status");
  const notice = $("notice"), noticeText = $("notice-text"), reconnectBtn = $("reconnect");
  const typing = $("typing");

  let ws = null, ready = false, attempt = 0, retryTimer = 0, typingTimer = 0, noticeTimer = 0;
  let lastSentAt = 0, lastTypingAt = 0, outage = false, flushTimer = 0, holdUntil = 0, seq = 0;
  const outbox = [], recent = []; // texts waiting to go; when recent onMessage requests went
  const unacked = new Map(); // tracingId -> text sent but not yet echoed back by the upstream
  const seen = new Set();
  const transcript = [];

  const url_of = (path) => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  const store = (k, v) => { try { v == null ? sessionStorage.removeItem(k) : sessionStorage.setItem(k, v); } catch (_) {} };
  const load = (k) => { try { return sessionStorage.getItem(k); } catch (_) { return null; } };

  function setStatus(state, text) { status.dataset.state = state; status.textContent = text; }

  function showNotice(text, { code = "", severity = "warn", button = false, hideAfter = 0 } = {}) {
    clearTimeout(noticeTimer);
    noticeText.textContent = text;
    notice.dataset.code = String(code);
    notice.dataset.severity = severity;
    reconnectBtn.hidden = !button;
    notice.hidden = false;
    if (hideAfter) noticeTimer = setTimeout(() => { notice.hidden = true; }, hideAfter);
  }

  // kind: "guest" | "agent" | "note"; entries are kept in sessionStorage so a reload shows them.
  function add(kind, text, { id = "", testid = "", save = true } = {}) {
    if (id) { if (seen.has(id)) return; seen.add(id); }
    const li = document.createElement("li");
    li.className = kind === "note" ? "note" : `msg ${kind}`;
    li.dataset.testid = testid || (kind === "note" ? "note" : `msg-${kind}`);
    if (kind === "agent") {
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = "Agent";
      li.append(who);
    }
    li.append(document.createTextNode(text));
    list.append(li);
    list.scrollTop = list.scrollHeight;
    if (save) {
      transcript.push({ kind, text, id, testid });
      store(TRANSCRIPT_KEY, JSON.stringify(transcript.slice(-200)));
    }
  }

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !ready) return false;
    ws.send(JSON.stringify(obj));
    lastSentAt = Date.now();
    return true;
  }

  // Milliseconds until the next onMessage request fits the upstream's rate limit.
  function nextSlotIn() {
    const now = Date.now();
    while (recent.length && now - recent[0] >= WINDOW_MS) recent.shift();
    const byRate = recent.length < MESSAGES_PER_SEC ? 0 : WINDOW_MS - (now - recent[0]);
    return Math.max(byRate, holdUntil - now, 0);
  }

  function onMessage(message, text) {
    const tracingId = "gg-" + ++seq; // Genesys echoes it in the reply, 429 included
    if (!send({ action: "onMessage", message, tracingId })) return false;
    recent.push(Date.now());
    if (text != null) unacked.set(tracingId, text);
    return true;
  }

  // Sends queued texts in order, paced to the rate limit; the rest wait for a free slot, or
  // for the session to be ready again.
  function flush() {
    clearTimeout(flushTimer);
    while (outbox.length && ready) {
      const wait = nextSlotIn();
      if (wait > 0) { flushTimer = setTimeout(flush, wait + 10); break; }
      if (!onMessage({ type: "Text", text: outbox[0] }, outbox[0])) break;
      outbox.shift();
    }
    if (outbox.length && !ws && !retryTimer) connect();
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    const ticket = load(TICKET_KEY);
    setStatus("connecting", ticket ? "Reconnecting…" : "Connecting…");
    const sock = new WebSocket(url_of("/ws") + (ticket ? "?resume=" + encodeURIComponent(ticket) : ""));
    ws = sock;
    ready = false;
    sock.onmessage = (ev) => { if (sock === ws) onFrame(ev.data, ticket); };
    sock.onclose = (ev) => { if (sock === ws) onClose(ev, ticket); };
  }

  function onFrame(data, ticketSent) {
    let m;
    try { m = JSON.parse(data); } catch (_) { return; }
    if (!m || typeof m !== "object") return;
    if (m.type === "guestgate" && m.class === "SessionReady") return onReady(m.body || {}, ticketSent);
    const body = m.body || {};
    const mine = unacked.get(m.tracingId); // the text this frame answers, if any
    unacked.delete(m.tracingId);
    switch (m.class) {
      case "StructuredMessage":
        if (m.type === "response") return; // the reply to our echo keepalive
        return onStructured(body);
      case "TooManyRequestsErrorMessage": {
        const wait = Number(body.retryAfter) || 1;
        holdUntil = Date.now() + wait * 1000;
        if (mine == null) return; // a typing event: not worth a retry
        outbox.unshift(mine);
        flush();
        return showNotice(`Sending too fast: your message goes again in ${wait} s.`, { code: 429, hideAfter: (wait + 2) * 1000 });
      }
      case "SessionExpiredEvent":
        store(TICKET_KEY, null);
        return add("note", "Your chat session expired.");
      case "SessionClearedEvent":
        store(TICKET_KEY, null);
        return add("note", "The conversation was cleared.");
      case "string":
        if (m.code === 4006 || m.code === 4007) store(TICKET_KEY, null);
        return showNotice(`The chat service answered ${m.code}: ${typeof m.body === "string" ? m.body : "error"}`, { code: m.code, severity: "error", hideAfter: 8000 });
    }
  }

  function onReady(body, ticketSent) {
    ready = true;
    attempt = 0;
    if (body.resumeTicket) store(TICKET_KEY, String(body.resumeTicket));
    setStatus("online", "Online");
    if (body.newSession === false) add("note", "Session resumed", { testid: "note-resumed" });
    else if (ticketSent) add("note", "Could not resume the earlier conversation; a new one has started.", { testid: "note-new" });
    else add("note", outage ? "Reconnected. A new conversation has started." : "Connected. Say hello!", { testid: "note-new" });
    if (outage) showNotice("Reconnected.", { code: notice.dataset.code, severity: "ok", hideAfter: 4000 });
    else notice.hidden = true;
    outage = false;
    flush();
  }

  function onStructured(b) {
    const outbound = b.direction === "Outbound";
    if (b.type === "Event") {
      for (const e of b.events || []) {
        if (e.eventType === "Typing" && outbound) showTyping((e.typing && e.typing.duration) || 5000);
        if (e.eventType === "Presence" && e.presence && e.presence.type === "Disconnect") add("note", "The agent left the conversation.");
      }
      return;
    }
    if (typeof b.text !== "string" || !b.text) return;
    if (outbound) showTyping(0);
    add(outbound ? "agent" : "guest", b.text, { id: b.id || "" });
  }

  function showTyping(ms) {
    clearTimeout(typingTimer);
    typing.hidden = !ms;
    if (ms) typingTimer = setTimeout(() => { typing.hidden = true; }, ms);
  }

  function onClose(ev, ticketSent) {
    ws = null;
    ready = false;
    unacked.clear();
    showTyping(0);
    let [text, retry] = CLOSES[ev.code] || [`Connection closed (code ${ev.code}). Reconnecting…`, true];
    if (ev.code === 4400 && ticketSent) {
      // The earlier session is gone (expired, or the ticket no longer fits): start a new one.
      store(TICKET_KEY, null);
      text = "The earlier conversation could not be continued. Starting a new one…";
      retry = true;
    }
    if (!outage || !retry) add("note", `Disconnected (${ev.code}${ev.reason ? " " + ev.reason : ""})`, { testid: "note-closed" });
    outage = true;
    showNotice(text, { code: ev.code, severity: retry ? "warn" : "error", button: !retry });
    if (!retry) return setStatus("offline", "Offline");
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(attempt, ev.code === 4429 ? 3 : 0));
    const delay = Math.round(cap / 2 + Math.random() * cap / 2); // jitter spreads a crowd's reconnects
    attempt++;
    setStatus("connecting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    retryTimer = setTimeout(connect, delay);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    outbox.push(text);
    flush();
  });
  input.addEventListener("input", () => {
    const now = Date.now();
    // Typing is a nicety: send it only when it cannot delay a real message.
    if (!input.value || now - lastTypingAt < TYPING_EVERY_MS || nextSlotIn() > 0 || recent.length) return;
    if (onMessage({ type: "Event", events: [{ eventType: "Typing", typing: { type: "On" } }] })) lastTypingAt = now;
  });
  reconnectBtn.addEventListener("click", () => { attempt = 0; if (!ws) connect(); });
  window.addEventListener("online", () => { if (retryTimer) connect(); });
  setInterval(() => {
    if (ready && Date.now() - lastSentAt >= KEEPALIVE_MS) send({ action: "echo", message: { type: "Text", text: "ping" } });
  }, 5000);

  try { for (const e of JSON.parse(load(TRANSCRIPT_KEY) || "[]")) { transcript.push(e); add(e.kind, e.text, { id: e.id, testid: e.testid, save: false }); } } catch (_) {}
  window.guestgateDemo = { transcript, close: () => ws && ws.close(1000) };
  connect();
})();
