// A real p2p-chat server for the SDK tests: `p2p-chat migrate` then `p2p-chat serve` on a
// free port, SQLite in a temporary directory, short timings. The command is
// $CHAT_TEST_P2P_CHAT, or the repository's .venv/bin/p2p-chat.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const command = process.env.CHAT_TEST_P2P_CHAT ?? join(root, ".venv", "bin", "p2p-chat");

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export class TestServer {
  /** @param {Record<string, string>} [env] extra CHAT_* settings */
  constructor(env = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "chat-js-sdk-"));
    this.extra = env;
    this.port = 0;
    /** @type {import("node:child_process").ChildProcess | null} */
    this.process = null;
    this.output = "";
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  get env() {
    // Only what the server needs: no CHAT_* of the caller's environment leaks in.
    const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("CHAT_")));
    return {
      ...base,
      CHAT_ENV: "dev",
      CHAT_HOST: "127.0.0.1",
      CHAT_PORT: String(this.port),
      CHAT_DATABASE_URL: `sqlite+aiosqlite:///${join(this.dir, "chat.db")}`,
      CHAT_JWT_SECRET: "js-sdk-tests-secret-of-at-least-32-bytes!",
      CHAT_OFFLINE_GRACE_S: "0.3",
      CHAT_REDELIVERY_S: "2",
      CHAT_LOG_LEVEL: "warning",
      ...this.extra,
    };
  }

  async start() {
    if (!this.port) {
      this.port = await freePort();
      const migrated = spawnSync(command, ["migrate"], { env: this.env, cwd: this.dir, encoding: "utf8" });
      if (migrated.status !== 0) throw new Error(`p2p-chat migrate failed: ${migrated.stderr}`);
    }
    const child = spawn(command, ["serve"], { env: this.env, cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] });
    this.process = child;
    child.stdout?.on("data", (chunk) => (this.output += chunk));
    child.stderr?.on("data", (chunk) => (this.output += chunk));
    const deadline = Date.now() + 15000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`p2p-chat serve exited ${child.exitCode}: ${this.output}`);
      try {
        const response = await fetch(`${this.baseUrl}/health`);
        if (response.ok) return this;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`p2p-chat serve did not answer /health within 15 s: ${this.output}`);
  }

  /** @param {NodeJS.Signals} signal */
  async stop(signal = "SIGTERM") {
    const child = this.process;
    this.process = null;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    await exited;
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy in front of a server that can go silent: `freeze()` stops forwarding on the
 * connections open now, without closing them (a network that drops packets: no FIN, no RST, so
 * neither end notices by itself); connections made later are forwarded again.
 */
export class FreezingProxy {
  /** @param {number} targetPort */
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.port = 0;
    /** @type {Set<import("node:net").Socket>} */
    this.sockets = new Set();
    this.server = createServer((client) => {
      const upstream = connect(this.targetPort, "127.0.0.1");
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on("error", () => {});
        socket.on("close", () => {
          this.sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    await new Promise((resolveListen) => this.server.listen(0, "127.0.0.1", () => resolveListen(undefined)));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    return this;
  }

  freeze() {
    for (const socket of this.sockets) {
      socket.unpipe();
      socket.pause();
    }
    this.frozen = [...this.sockets];
  }

  async close() {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolveClose) => this.server.close(() => resolveClose(undefined)));
  }
}
