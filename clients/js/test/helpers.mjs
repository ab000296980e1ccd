// Helpers of the SDK tests: clients on the `ws` package's WebSocket (Node 20 has no global one),
// unique accounts, and waiting for events with a deadline (never sleep-and-hope).
import WebSocket from "ws";
import { ChatClient, MemoryStorage } from "../src/chat.js";

let counter = 0;

/**
 * @param {string} baseUrl
 * @param {Partial<import("../src/chat.js").ChatClientOptions>} [options]
 */
export function makeClient(baseUrl, options = {}) {
  return new ChatClient({
    baseUrl,
    WebSocket: /** @type {any} */ (WebSocket),
    storage: new MemoryStorage(),
    reconnect: { initialMs: 50, maxMs: 400 },
    requestTimeoutMs: 5000,
    ...options,
  });
}

/** A fresh account's details. @param {string} name */
export function account(name) {
  counter += 1;
  const unique = `${process.pid}${counter}${Date.now() % 100000}`;
  return {
    name,
    email: `${name.toLowerCase()}-${unique}@example.com`,
    phoneNumber: `+1${unique.padStart(10, "0").slice(-10)}`,
    password: "correct horse battery",
  };
}

/**
 * Resolves with the first `name` event for which `match` holds; rejects after `timeoutMs`.
 * @param {ChatClient} client
 * @param {string} name
 * @param {(payload: any) => boolean} [match]
 * @param {number} [timeoutMs]
 * @returns {Promise<any>}
 */
export function nextEvent(client, name, match = () => true, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no "${name}" event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = client.on(/** @type {any} */ (name), (payload) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

/**
 * Resolves once `condition()` holds, checked after every event of `client`; rejects after `timeoutMs`.
 * @param {() => boolean} condition
 * @param {number} [timeoutMs]
 * @param {string} [what]
 */
export async function until(condition, timeoutMs = 5000, what = "the condition") {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not hold within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Records every event of a client, in order.
 * @param {ChatClient} client
 * @param {string[]} names
 */
export function record(client, names) {
  /** @type {Array<{name: string, payload: any}>} */
  const events = [];
  for (const name of names) client.on(/** @type {any} */ (name), (payload) => events.push({ name, payload }));
  return events;
}

/**
 * A signed-in, connected client of a new account.
 * @param {string} baseUrl
 * @param {string} name
 * @param {Partial<import("../src/chat.js").ChatClientOptions>} [options]
 */
export async function online(baseUrl, name, options = {}) {
  const client = makeClient(baseUrl, options);
  await client.register(account(name));
  const ready = nextEvent(client, "ready");
  client.connect();
  await ready;
  return client;
}

/** Makes two users contacts (a message each way), so presence and typing flow between them.
 * @param {ChatClient} a @param {ChatClient} b */
export async function befriend(a, b) {
  const ids = /** @type {[number, number]} */ ([a.user?.id, b.user?.id]);
  const got = nextEvent(b, "message", (m) => m.from === ids[0]);
  await a.send(ids[1], "hello").ack;
  await got;
  const back = nextEvent(a, "message", (m) => m.from === ids[1]);
  await b.send(ids[0], "hi").ack;
  await back;
}
