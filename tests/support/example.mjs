// Starts the to-do example as a user runs it, on 127.0.0.1 port 0 with a throw-away SQLite file,
// and waits for its `listening on http://<addr>` line. Node built-ins only: shared by the Node test
// projects next to this folder.
//
// The binary is `REST_LIVE_EXAMPLE_BIN`, else <target dir>/debug/examples/todo (built if missing).

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export function exampleBinary() {
  if (process.env.REST_LIVE_EXAMPLE_BIN) return process.env.REST_LIVE_EXAMPLE_BIN;
  // Cargo's target directory, wherever CARGO_TARGET_DIR puts it.
  const target = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, "target");
  const bin = join(target, "debug", "examples", "todo");
  if (!existsSync(bin)) {
    const built = spawnSync("cargo", ["build", "--example", "todo"], { cwd: root, stdio: "inherit" });
    if (built.status !== 0) throw new Error("cargo build --example todo failed");
  }
  return bin;
}

/**
 * @param {{args?: string[], env?: Record<string, string>}} options
 * @returns {Promise<{url: string, wsUrl: string, drlUrl: string, stop: () => Promise<void>}>}
 */
export async function startExample({ args = [], env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "rest-live-example-"));
  const child = spawn(exampleBinary(), args, {
    cwd: dir,
    env: {
      ...process.env,
      REST_LIVE_BIND: "127.0.0.1:0",
      DATABASE_URL: `sqlite://${join(dir, "todo.db")}`,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const addr = await new Promise((resolveAddr, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error("the example did not start within 60 s")), 60_000);
    child.on("exit", (code) => reject(new Error(`the example exited early (${code})`)));
    child.stdout.on("data", (chunk) => {
      buffered += chunk;
      const match = /listening on http:\/\/(\S+)/.exec(buffered);
      if (match) {
        clearTimeout(timer);
        resolveAddr(match[1]);
      }
    });
  });
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGINT");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { url: `http://${addr}`, wsUrl: `ws://${addr}/ws`, drlUrl: `ws://${addr}/ws/subscribe/`, stop };
}

/** A JSON request to the example's HTTP API; resolves with `{status, body, headers}`. */
export async function api(base, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
}
