// guestgate demo chat: a plain WebSocket to guestgate's /ws, speaking Genesys Web Messaging
// request shapes without credentials (guestgate configures the session and adds them upstream),
// plus guestgate's own frames (docs/genesys-page-protocol.md): SessionReady, ReplayDone,
// History, MessageNotSent, Error, SessionEnded. Signing in: the OIDC code flow with PKCE against
// the identity provider /signin.json names; only the code (and its verifier) goes to guestgate.
"use strict";
(() => {
  const TICKET_KEY = "guestgate.resumeTicket";
  const LAST_KEY = "guestgate.lastMessageId"; // the last non-Event message shown: after=<id>
  const SIGNIN_KEY = "guestgate.signInStarted"; // {state, verifier} until the provider answers
  const KEEPALIVE_MS = 30000; // app-level echo at most this often (Genesys's SDK does the same)
  const TYPING_EVERY_MS = 2000; // guestgate forwards one per 5 s; this keeps keystrokes cheap
  const HISTORY_PAGE = 25;
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
    4410: ["This conversation has ended.", false],
    4411: ["You signed out.", false],
    4412: ["Your sign-in has expired or was not accepted: please sign in again.", false],
    4420: ["Messages were sent too fast. Reconnecting shortly…", true],
    4429: ["The chat service is busy right now. Retrying shortly…", true],
    4502: ["The chat service sent an invalid response. Reconnecting…", true],
    4503: ["Lost the connection to the chat service. Reconnecting…", true],
    4504: ["The chat service timed out. Reconnecting…", true],
  };

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
  const list = $("messages"), input = $("input"), form = $("composer"), status = $("status");
  const notice = $("notice"), noticeText = $("notice-text"), reconnectBtn = $("reconnect");
  const typing = $("typing"), fileInput = $("file"), attach = $("attach"), sendBtn = $("send");
  const upload = $("upload"), uploadName = $("upload-name"), progress = $("upload-progress");
  const ended = $("ended"), endedText = $("ended-text"), startNewBtn = $("start-new");
  const earlier = $("load-earlier"), account = $("account"), accountText = $("account-text");
  const signInBtn = $("sign-in"), signOutBtn = $("sign-out");

  let ws = null, ready = false, attempt = 0, retryTimer = 0, typingTimer = 0, noticeTimer = 0;
  let lastSentAt = 0, lastTypingAt = 0, outage = false, flushTimer = 0, holdUntil = 0, seq = 0;
  let firstLoad = true, historyAfterReplay = false, historyNext = 1, historyAnchor = null;
  let endedMode = "", startingNew = false, media = null, pending = null; // pending: the upload
  let signedIn = false, signInInfo = null; // signInInfo: /signin.json, when sign-in is offered
  let lastId = load(LAST_KEY) || "";
  const outbox = []; // texts waiting for the session to be ready
  const unacked = new Map(); // tracingId -> text sent but not yet echoed back
  const seen = new Set(); // ids of the messages shown

  function url_of(path) { return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path; }
  function store(k, v) { try { v == null ? sessionStorage.removeItem(k) : sessionStorage.setItem(k, v); } catch (_) {} }
  function load(k) { try { return sessionStorage.getItem(k); } catch (_) { return null; } }

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

  function note(text, testid = "note") {
    const li = document.createElement("li");
    li.className = "note";
    li.dataset.testid = testid;
    li.textContent = text;
    list.append(li);
    list.scrollTop = list.scrollHeight;
    return li;
  }

  // An attachment as a link, with a thumbnail for images.
  function attachmentView(a) {
    const link = document.createElement("a");
    link.className = "file";
    link.dataset.testid = "attachment-link";
    link.href = a.url;
    link.target = "_blank";
    link.rel = "noopener";
    if (a.mediaType === "Image" || String(a.mime || "").startsWith("image/")) {
      const img = document.createElement("img");
      img.dataset.testid = "attachment-thumb";
      img.src = a.url;
      img.alt = a.filename || "image";
      link.append(img);
    }
    const name = document.createElement("span");
    const kb = Number(a.fileSize) / 1024;
    name.textContent = (a.filename || "attachment") + (kb ? ` · ${kb < 1024 ? Math.ceil(kb) + " KB" : (kb / 1024).toFixed(1) + " MB"}` : "");
    link.append(name);
    return link;
  }

  // Shows a Text message (live, replayed or from history) once; returns whether it was new.
  function showMessage(b, historical) {
    if (!b.id || seen.has(b.id)) return false;
    const files = (b.content || []).filter((c) => c && c.contentType === "Attachment" && c.attachment && /^https?:/.test(c.attachment.url || ""));
    if (!b.text && !files.length) return false;
    seen.add(b.id);
    const agent = b.direction === "Outbound";
    const li = document.createElement("li");
    li.className = `msg ${agent ? "agent" : "guest"}`;
    li.dataset.testid = agent ? "msg-agent" : "msg-guest";
    li.dataset.id = b.id;
    li.dataset.time = String(Date.parse((b.channel && b.channel.time) || "") || 0);
    if (agent) {
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = "Agent";
      li.append(who);
    }
    if (b.text) li.append(document.createTextNode(b.text));
    for (const c of files) li.append(attachmentView(c.attachment));
    if (historical) place(li);
    else {
      list.append(li);
      lastId = b.id;
      store(LAST_KEY, lastId);
    }
    list.scrollTop = list.scrollHeight;
    return true;
  }

  // History goes before the first newer message shown, else before this load's "resumed" note.
  function place(li) {
    const t = Number(li.dataset.time);
    for (const el of list.children) {
      if (el.classList.contains("msg") && Number(el.dataset.time) > t) return list.insertBefore(li, el);
    }
    if (historyAnchor && historyAnchor.isConnected) list.insertBefore(li, historyAnchor);
    else list.append(li);
  }

  function clearTranscript() {
    list.textContent = "";
    seen.clear();
    lastId = "";
    store(LAST_KEY, null);
    earlier.hidden = true;
    historyNext = 1;
  }

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !ready) return false;
    ws.send(JSON.stringify(obj));
    lastSentAt = Date.now();
    return true;
  }

  function onMessage(message, text) {
    const tracingId = "gg-" + ++seq; // echoed in Genesys's reply and in guestgate's refusals
    if (!send({ action: "onMessage", message, tracingId })) return false;
    if (text != null) unacked.set(tracingId, text);
    return true;
  }

  // Sends queued texts in order (guestgate paces them to Genesys's limit); waits out a 429.
  function flush() {
    clearTimeout(flushTimer);
    const wait = holdUntil - Date.now();
    if (wait > 0 && outbox.length) { flushTimer = setTimeout(flush, wait + 10); return; }
    while (outbox.length && ready && !endedMode) {
      if (!onMessage({ type: "Text", text: outbox[0] }, outbox[0])) break;
      outbox.shift();
    }
    if (outbox.length && !ws && !retryTimer && !endedMode) connect();
  }

  function loadHistory(n) {
    if (send({ action: "guestgate.getHistory", pageNumber: n, pageSize: HISTORY_PAGE, tracingId: "h-" + n })) historyNext = n;
  }

  // signIn: {code, codeVerifier} from the identity provider, sent once as the first frame
  // (with the guest ticket, if any: the conversation is upgraded rather than left behind).
  function connect(signIn) {
    clearTimeout(retryTimer);
    retryTimer = 0;
    const ticket = load(TICKET_KEY);
    const after = ticket && lastId && !signIn ? "&after=" + encodeURIComponent(lastId) : "";
    setStatus("connecting", signIn ? "Signing in…" : ticket ? "Reconnecting…" : "Connecting…");
    const sock = new WebSocket(url_of("/ws") + (signIn ? "?signin=first-frame" : ticket ? "?resume=" + encodeURIComponent(ticket) + after : ""));
    ws = sock;
    ready = false;
    if (signIn) {
      sock.onopen = () => sock.send(JSON.stringify({ type: "guestgate", action: "signIn", ...signIn, ...(ticket ? { ticket } : {}) }));
    }
    sock.onmessage = (ev) => { if (sock === ws) onFrame(ev.data, ticket, !!after); };
    sock.onclose = (ev) => { if (sock === ws) onClose(ev, ticket); };
  }

  function onFrame(data, ticketSent, afterSent) {
    let m;
    try { m = JSON.parse(data); } catch (_) { return; }
    if (!m || typeof m !== "object") return;
    if (m.type === "guestgate") return onOwn(m, ticketSent, afterSent);
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
      case "PresignedUrlResponse":
        if (pending && body.attachmentId === pending.id && body.headers && Object.keys(body.headers).length) put(body);
        return;
      case "UploadSuccessEvent":
        if (!pending || body.attachmentId !== pending.id) return;
        onMessage({ type: "Text", content: [{ contentType: "Attachment", attachment: { id: pending.id } }] });
        setUpload("done", `${pending.name} sent`, 100);
        pending = null;
        return;
      case "UploadFailureEvent":
        if (pending && body.attachmentId === pending.id) uploadFailed(body.errorMessage || "the upload was refused");
        return;
      case "SessionExpiredEvent":
      case "SessionClearedEvent":
        store(TICKET_KEY, null); // guestgate's SessionEnded and close 4410 follow
        return;
      case "string": {
        const why = typeof m.body === "string" ? m.body : "error";
        if (pending && m.tracingId === pending.tracingId) return uploadFailed(why);
        if (m.code === 4006 || m.code === 4007) store(TICKET_KEY, null);
        const what = mine != null ? `Your message "${mine}" was not sent: ${why}.` : `The chat service answered ${m.code}: ${why}`;
        return showNotice(what, { code: m.code, severity: "error", hideAfter: 8000 });
      }
    }
  }

  // guestgate's own frames.
  function onOwn(m, ticketSent, afterSent) {
    const body = m.body || {};
    switch (m.class) {
      case "SessionReady": return onReady(body, ticketSent, afterSent);
      case "ReplayDone":
        if (historyAfterReplay || body.complete === false) loadHistory(1);
        historyAfterReplay = false;
        return;
      case "History": return onHistory(body);
      case "MessageNotSent": {
        const text = unacked.get(m.tracingId);
        unacked.delete(m.tracingId);
        if (text != null && !input.value) input.value = text;
        return showNotice("Too many messages are waiting to be sent: that one was not sent. Please try again in a moment.", { code: m.code, hideAfter: 6000 });
      }
      case "Error":
        if (String(m.tracingId).startsWith("h-") && m.code === 429) {
          return void setTimeout(() => loadHistory(Number(m.tracingId.slice(2))), 1100);
        }
        return showNotice(`Sorry, that did not work (${m.code}): ${body.message || "error"}.`, { code: m.code, severity: "error", hideAfter: 8000 });
      case "SessionEnded":
        store(TICKET_KEY, null);
        if (body.reason === "signed_out" || body.reason === "sign_in_expired") return; // 4411/4412 follow
        return showEnded(`This conversation has ended (${body.reason || "closed"}).`, "fresh");
    }
  }

  function onReady(body, ticketSent, afterSent) {
    ready = true;
    attempt = 0;
    media = body.allowedMedia || null;
    attach.hidden = !(media && media.inbound && (media.inbound.fileTypes || []).length);
    if (body.resumeTicket) store(TICKET_KEY, String(body.resumeTicket));
    signedIn = body.signedIn === true;
    showAccount();
    setStatus("online", "Online");
    if (startingNew) {
      startingNew = false;
      clearTranscript();
      hideEnded();
      note("A new conversation has started.", "note-new");
    } else if (body.newSession === false) {
      const li = note("Session resumed", "note-resumed");
      if (firstLoad) { // a reload: earlier messages come from history
        historyAnchor = li;
        if (afterSent) historyAfterReplay = true;
        else loadHistory(1);
      }
    } else {
      if (ticketSent || lastId) { lastId = ""; store(LAST_KEY, null); } // a new conversation
      if (ticketSent) note("Could not resume the earlier conversation; a new one has started.", "note-new");
      else note(outage ? "Reconnected. A new conversation has started." : "Connected. Say hello!", "note-new");
    }
    firstLoad = false;
    if (body.readOnly) showEnded("The agent ended the conversation.", "agent");
    if (outage) showNotice("Reconnected.", { code: notice.dataset.code, severity: "ok", hideAfter: 4000 });
    else notice.hidden = true;
    outage = false;
    flush();
  }

  function onHistory(body) {
    const entities = Array.isArray(body.entities) ? body.entities.slice().reverse() : []; // oldest first
    let added = 0;
    for (const b of entities) if (b && b.type !== "Event" && showMessage(b, true)) added++;
    if (!lastId && entities.length) { lastId = entities[entities.length - 1].id || ""; store(LAST_KEY, lastId || null); }
    earlier.hidden = !(Number(body.pageNumber) < Number(body.pageCount));
    earlier.dataset.added = String(added);
  }

  function onStructured(b) {
    const agent = b.direction === "Outbound";
    if (b.type === "Event") {
      for (const e of b.events || []) {
        if (e.eventType === "Typing" && agent) showTyping((e.typing && e.typing.duration) || 5000);
        if (e.eventType === "Presence" && agent && e.presence && e.presence.type === "Disconnect") {
          if (!seen.has(b.id)) note("The agent left the conversation.", "note-left");
          if (b.id) seen.add(b.id);
          showTyping(0);
          showEnded("The agent ended the conversation.", "agent");
        }
      }
      return;
    }
    if (agent) showTyping(0);
    showMessage(b, false);
  }

  function showTyping(ms) {
    clearTimeout(typingTimer);
    typing.hidden = !ms;
    if (ms) typingTimer = setTimeout(() => { typing.hidden = true; }, ms);
  }

  // mode "agent": the agent left (read-only), guestgate.startNew on this socket; "fresh": the
  // session is gone, connect again without a ticket.
  function showEnded(text, mode) {
    endedMode = mode;
    endedText.textContent = text;
    ended.hidden = false;
    for (const el of [input, sendBtn, fileInput]) el.disabled = true;
  }

  function hideEnded() {
    endedMode = "";
    ended.hidden = true;
    for (const el of [input, sendBtn, fileInput]) el.disabled = false;
  }

  startNewBtn.addEventListener("click", () => {
    if (endedMode === "agent" && ready) {
      if (!startingNew && send({ action: "guestgate.startNew" })) startingNew = true;
      return;
    }
    store(TICKET_KEY, null);
    clearTranscript();
    hideEnded();
    attempt = 0;
    if (ws) ws.close(1000);
    ws = null;
    connect();
  });

  function onClose(ev, ticketSent) {
    ws = null;
    ready = false;
    startingNew = false;
    unacked.clear();
    showTyping(0);
    if (pending) uploadFailed("the connection dropped");
    let [text, retry] = CLOSES[ev.code] || [`Connection closed (code ${ev.code}). Reconnecting…`, true];
    if (ev.code === 4400 && ticketSent) {
      // The earlier session is gone (expired, or the ticket no longer fits): start a new one.
      store(TICKET_KEY, null);
      text = "The earlier conversation could not be continued. Starting a new one…";
      retry = true;
    }
    if (ev.code === 4411 || ev.code === 4412) { // signed out, or the sign-in is gone
      store(TICKET_KEY, null);
      signedIn = false;
      showAccount();
      clearTranscript(); // nothing of the signed-in conversation stays on the screen
      showEnded(ev.code === 4411 ? "You signed out. Sign in again, or start a new conversation as a guest." : "Please sign in again.", "fresh");
      showNotice(text, { code: ev.code, severity: ev.code === 4411 ? "ok" : "error" });
      return setStatus("offline", "Signed out");
    }
    if (ev.code === 4410) {
      store(TICKET_KEY, null);
      if (endedMode !== "fresh") showEnded("This conversation has ended.", "fresh");
      return setStatus("offline", "Ended");
    }
    if (!outage || !retry) note(`Disconnected (${ev.code}${ev.reason ? " " + ev.reason : ""})`, "note-closed");
    outage = true;
    showNotice(text, { code: ev.code, severity: retry ? "warn" : "error", button: !retry });
    if (!retry) return setStatus("offline", "Offline");
    const slow = ev.code === 4429 || ev.code === 4420 ? 3 : 0;
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(attempt, slow));
    const delay = Math.round(cap / 2 + Math.random() * cap / 2); // jitter spreads a crowd's reconnects
    attempt++;
    setStatus("connecting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    retryTimer = setTimeout(connect, delay);
  }

  // Uploads: onAttachment -> PUT to the pre-signed URL with exactly its headers -> on
  // UploadSuccessEvent, the message that carries it.
  function setUpload(state, text, pct) {
    upload.hidden = false;
    upload.dataset.state = state;
    uploadName.textContent = text;
    if (pct != null) progress.value = pct;
  }

  function uploadFailed(why) {
    if (pending && pending.xhr) pending.xhr.abort();
    setUpload("failed", `${pending ? pending.name : "The file"} was not sent: ${why}`);
    pending = null;
  }

  function refusal(file) {
    const inbound = (media && media.inbound) || {};
    const types = (inbound.fileTypes || []).map((t) => String(t.type || "").toLowerCase());
    const type = (file.type || "").toLowerCase();
    const ok = types.some((t) => t === type || t === "*/*" || (t.endsWith("/*") && type.startsWith(t.slice(0, -1))));
    if (!type || !ok) return `files of this type (${file.type || "unknown"}) cannot be sent here`;
    if (file.size === 0) return "the file is empty";
    if (inbound.maxFileSizeKB && file.size > inbound.maxFileSizeKB * 1024) return `the file is larger than ${Math.round(inbound.maxFileSizeKB / 1024)} MB`;
    const ext = "." + (file.name.split(".").pop() || "").toLowerCase();
    if ((media.blockedExtensions || []).some((b) => ("." + String(b).replace(/^\./, "")).toLowerCase() === ext)) return `${ext} files cannot be sent`;
    return "";
  }

  function uuid() { // crypto.randomUUID needs a secure context; getRandomValues does not
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    if (!file) return;
    if (pending) return showNotice("One file at a time, please: the last one is still being sent.", { hideAfter: 5000 });
    const why = refusal(file);
    if (why) return setUpload("refused", `${file.name} was not sent: ${why}`, 0);
    const id = uuid(), tracingId = "att-" + ++seq;
    pending = { id, tracingId, file, name: file.name };
    setUpload("requesting", `Preparing ${file.name}…`, 0);
    if (!send({ action: "onAttachment", attachmentId: id, fileName: file.name, fileType: file.type, fileSize: file.size, errorsAsJson: true, tracingId })) uploadFailed("not connected");
  });

  function put(slot) {
    const xhr = new XMLHttpRequest();
    pending.xhr = xhr;
    const mine = pending;
    xhr.open("PUT", slot.url);
    for (const [k, v] of Object.entries(slot.headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && pending === mine) progress.value = Math.floor((100 * e.loaded) / e.total); };
    xhr.onload = () => {
      if (pending !== mine) return;
      if (xhr.status >= 200 && xhr.status < 300) setUpload("uploaded", `${mine.name} uploaded, sending…`, 100);
      else uploadFailed(`the storage answered ${xhr.status}`);
    };
    xhr.onerror = () => { if (pending === mine) uploadFailed("the upload failed"); };
    setUpload("uploading", `Uploading ${mine.name}…`, 0);
    xhr.send(mine.file);
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text || endedMode) return;
    input.value = "";
    outbox.push(text);
    flush();
  });
  input.addEventListener("input", () => {
    const now = Date.now();
    if (!input.value || now - lastTypingAt < TYPING_EVERY_MS) return;
    if (onMessage({ type: "Event", events: [{ eventType: "Typing", typing: { type: "On" } }] })) lastTypingAt = now;
  });
  earlier.addEventListener("click", () => loadHistory(historyNext + 1));
  reconnectBtn.addEventListener("click", () => { attempt = 0; if (!ws) connect(); });
  window.addEventListener("online", () => { if (retryTimer) connect(); });
  setInterval(() => {
    if (ready && Date.now() - lastSentAt >= KEEPALIVE_MS) send({ action: "echo", message: { type: "Text", text: "ping" } });
  }, 5000);

  // Signing in: shown when the demo serves /signin.json ({authorizeUrl, redirectUri, user}).
  function showAccount() {
    account.hidden = !signInInfo && !signedIn;
    account.dataset.state = signedIn ? "signed-in" : "guest";
    accountText.textContent = signedIn ? `Signed in as ${(signInInfo && signInInfo.user) || "you"}` : "Chatting as a guest";
    signInBtn.hidden = signedIn || !signInInfo;
    signOutBtn.hidden = !signedIn;
    signOutBtn.disabled = false;
  }

  // base64url without padding (RFC 7636).
  const b64u = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  // The OIDC code flow with PKCE: the verifier and state wait in sessionStorage for the redirect.
  signInBtn.addEventListener("click", async () => {
    if (!signInInfo) return;
    const state = b64u(crypto.getRandomValues(new Uint8Array(16)));
    const verifier = b64u(crypto.getRandomValues(new Uint8Array(32)));
    const q = new URLSearchParams({ response_type: "code", redirect_uri: signInInfo.redirectUri, state });
    if (crypto.subtle) { // a secure context (https, or loopback): PKCE with S256
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
      q.set("code_challenge", b64u(new Uint8Array(digest)));
      q.set("code_challenge_method", "S256");
    }
    store(SIGNIN_KEY, JSON.stringify({ state, verifier: crypto.subtle ? verifier : "" }));
    location.assign(signInInfo.authorizeUrl + "?" + q);
  });

  signOutBtn.addEventListener("click", () => {
    if (send({ action: "guestgate.signOut" })) signOutBtn.disabled = true; // close 4411 follows
    else showNotice("Not connected: sign out again once the chat is back online.", { hideAfter: 5000 });
  });

  // Back from the identity provider with ?code=..&state=..: both leave the address bar at once.
  function returnedSignIn() {
    const q = new URLSearchParams(location.search);
    if (!q.has("code") && !q.has("error")) return null;
    history.replaceState(null, "", location.pathname);
    let started = null;
    try { started = JSON.parse(load(SIGNIN_KEY) || "null"); } catch (_) {}
    store(SIGNIN_KEY, null);
    if (q.get("code") && started && started.state === q.get("state")) {
      return { code: q.get("code"), ...(started.verifier ? { codeVerifier: started.verifier } : {}) };
    }
    showNotice("The sign-in did not complete. Please try again.", { severity: "error", hideAfter: 8000 });
    return null;
  }

  fetch("/signin.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : null))
    .then((info) => { if (info && info.authorizeUrl && info.redirectUri) { signInInfo = info; showAccount(); } })
    .catch(() => {});

  window.guestgateDemo = { lastMessageId: () => lastId, close: () => ws && ws.close(1000) };
  connect(returnedSignIn());
})();
