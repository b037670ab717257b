// A plain Node.js guest client for Genesys Cloud Web Messaging behind guestgate.
// No Authorization header, no OAuth token, no deploymentId, no session token: guestgate holds
// the configuration, opens the Genesys guest socket, sends configureSession and adds the
// session token to every request. Usage: node node-client.mjs ws://127.0.0.1:8080/ws "hello"
import WebSocket from "ws";
import { fileURLToPath } from "node:url";

/** Sends one text and resolves with the agent's first reply. */
export function chat(url, text, { resumeTicket, timeoutMs = 10000 } = {}) {
  const target = resumeTicket ? `${url}?resume=${encodeURIComponent(resumeTicket)}` : url;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target); // no headers, no credentials
    const frames = [];
    let session = null;
    const fail = (err) => {
      clearTimeout(timer);
      ws.terminate();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`no agent reply within ${timeoutMs} ms`)), timeoutMs);
    ws.on("message", (data) => {
      const msg = JSON.parse(data.toString());
      frames.push(msg);
      if (msg.type === "guestgate" && msg.class === "SessionReady") {
        // guestgate's own first frame: the upstream session is configured. Keep resumeTicket
        // to continue this conversation on a later connection (it is sealed: no token inside).
        session = msg.body;
        ws.send(JSON.stringify({ action: "onMessage", message: { type: "Text", text } }));
      } else if (
        msg.class === "StructuredMessage" &&
        msg.body.direction === "Outbound" &&
        msg.body.type === "Text"
      ) {
        clearTimeout(timer);
        ws.close(1000);
        resolve({ session, reply: msg.body.text, frames });
      } else if (msg.class === "string" || msg.class === "TooManyRequestsErrorMessage") {
        fail(new Error(`upstream error ${msg.code}: ${JSON.stringify(msg.body)}`));
      }
    });
    ws.on("close", (code, reason) => fail(new Error(`closed with ${code} ${reason}`)));
    ws.on("error", fail);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [url = "ws://127.0.0.1:8080/ws", text = "hello from node"] = process.argv.slice(2);
  chat(url, text).then(
    ({ session, reply }) => console.log(`session ready (new: ${session.newSession}); agent: ${reply}`),
    (err) => {
      console.error(err.message);
      process.exitCode = 1;
    },
  );
}
