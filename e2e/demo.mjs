// Starts `guestgate demo` on loopback ports the OS picks and reads the URLs it prints.
// Every wait is bounded; the child is killed when the test's process exits, however it exits.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const BIN = process.env.GUESTGATE_BIN || path.join(ROOT, "target", "release", "guestgate");

const LABELS = {
  page: "chat page",
  ws: "websocket",
  metrics: "metrics",
  killSwitch: "kill switch",
};

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts the demo; resolves to { urls, output(), stop() } once every URL is printed. */
export async function startDemo({ timeoutMs = 20000 } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(`${BIN} does not exist: build it with cargo build --release --bin guestgate`);
  }
  const child = spawn(BIN, ["demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  let out = "";
  const strip = (d) => d.replace(/\x1b\[[0-9;]*m/g, ""); // log colours
  child.stdout.setEncoding("utf8").on("data", (d) => (out += strip(d)));
  child.stderr.setEncoding("utf8").on("data", (d) => (out += strip(d)));
  const exited = new Promise((resolve) => child.once("exit", (code, sig) => resolve(sig || code)));
  exited.then(() => running.delete(child));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
    // Anything the child left behind holding its pipes must not keep this process alive.
    child.stdout.destroy();
    child.stderr.destroy();
  };

  const find = () => {
    const urls = {};
    for (const [key, label] of Object.entries(LABELS)) {
      const m = out.match(new RegExp(`^\\s*${label}:\\s+(\\S+)`, "m"));
      if (m) urls[key] = m[1];
    }
    return urls;
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const urls = find();
    if (Object.keys(urls).length === Object.keys(LABELS).length) {
      return { urls, output: () => out, stop };
    }
    const gone = child.exitCode !== null || child.signalCode !== null;
    if (gone || Date.now() > deadline) {
      await stop();
      const missing = Object.values(LABELS).filter((l) => !new RegExp(`^\\s*${l}:`, "m").test(out));
      throw new Error(
        `guestgate demo ${gone ? "exited" : `did not print its URLs within ${timeoutMs} ms`}; ` +
          `missing lines: ${missing.map((l) => JSON.stringify(l + ":")).join(", ")} ` +
          `(this test needs the demo with the chat page, the Genesys preset and the kill switch). ` +
          `Its output:\n${out}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** fetch with a timeout. */
export async function fetchWithin(url, opts = {}, ms = 5000) {
  return fetch(url, { ...opts, signal: AbortSignal.timeout(ms) });
}
