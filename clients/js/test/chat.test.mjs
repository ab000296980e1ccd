// The SDK against a real p2p-chat server (SQLite, started by the test): accounts, a conversation
// both ways, offline batches, de-duplication, typing, presence, history, reads, re-auth, 4403,
// back-off on 4430, and last a server killed (SIGKILL) and restarted mid-conversation. One server
// for the whole file (starting one takes seconds); the tests run in order.
import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";
import WebSocket from "ws";
import { IDBFactory } from "fake-indexeddb";
import { ChatClient, ChatError, IndexedDBStorage, MemoryStorage } from "../src/chat.js";
import { account, befriend, makeClient, nextEvent, online, record, until } from "./helpers.mjs";
import { FreezingProxy, TestServer } from "./server.mjs";

/** @type {TestServer} */
let server;
/** @type {ChatClient[]} */
const clients = [];

before(async () => {
  // A generous message bucket: the offline-batch test sends 150 messages at once; two
  // connections per user, so that a third one is refused 4430.
  server = await new TestServer({
    CHAT_RATE_MSG_PER_S: "1000",
    CHAT_RATE_MSG_BURST: "1000",
    CHAT_MAX_CONNECTIONS_PER_USER: "2",
    CHAT_REGISTER_PER_HOUR: "1000",
  }).start();
});

afterEach(() => {
  // Each test's clients go: none is left reconnecting to the server the next tests use.
  for (const client of clients.splice(0)) client.disconnect();
});

after(async () => {
  await server.close();
});

/** @param {string} name @param {object} [options] */
async function connected(name, options) {
  const client = await online(server.baseUrl, name, options);
  clients.push(client);
  return client;
}

test("register, log in on another client, and a wrong password is a typed 401", async () => {
  const details = account("Ann");
  const first = makeClient(server.baseUrl);
  const profile = await first.register(details);
  assert.equal(profile.name, "Ann");
  assert.equal(profile.email, details.email);
  assert.deepEqual(first.user, profile);

  const second = makeClient(server.baseUrl);
  assert.deepEqual(await second.login({ email: details.email, password: details.password }), profile);
  assert.equal((await second.me()).id, profile.id);

  const third = makeClient(server.baseUrl);
  await assert.rejects(third.login({ email: details.email, password: "wrong password!" }), (error) => {
    assert.ok(error instanceof ChatError);
    assert.equal(error.status, 401);
    assert.equal(error.code, "unauthorized");
    return true;
  });
  assert.equal(third.user, null);
  await assert.rejects(third.register({ ...details, phoneNumber: "12" }), (error) => {
    assert.ok(error instanceof ChatError);
    assert.equal(error.code, "validation_error");
    assert.ok(error.errors?.some((e) => e.field === "phoneNumber"));
    return true;
  });
});

test("a conversation both ways: acks, messages, delivered and read receipts, refused sends", async () => {
  const [ann, bob] = await Promise.all([connected("Ann"), connected("Bob")]);
  const annId = /** @type {number} */ (ann.user?.id);
  const bobId = /** @type {number} */ (bob.user?.id);

  const received = nextEvent(bob, "message");
  const delivered = nextEvent(ann, "delivered");
  const outboxes = record(ann, ["outbox"]);
  const { clientMsgId, ack } = ann.send(bobId, "hi Bob");
  assert.deepEqual(ann.outbox().map((item) => item.clientMsgId), [clientMsgId]);
  const sent = await ack;
  assert.equal(sent.clientMsgId, clientMsgId);
  assert.equal(sent.to, bobId);
  const message = await received;
  assert.equal(message.id, sent.id);
  assert.equal(message.from, annId);
  assert.equal(message.message, "hi Bob");
  assert.equal(message.clientMsgId, clientMsgId);
  assert.deepEqual((await delivered).ids, [sent.id]);
  assert.deepEqual(ann.outbox(), []);
  assert.deepEqual(
    outboxes.map((e) => e.payload.items.length),
    [1, 0]
  );

  const reply = nextEvent(ann, "message");
  const back = await bob.send(annId, "hi Ann").ack;
  assert.equal((await reply).id, back.id);
  assert.equal(back.seq, sent.seq + 1);

  const read = nextEvent(ann, "read");
  bob.markRead(annId, sent.seq);
  assert.deepEqual(await read, { by: bobId, peerId: bobId, upToSeq: sent.seq, readAt: (await read).readAt });

  // Sends the server refuses reject their ack, leave the outbox and are reported.
  const errors = record(ann, ["error"]);
  const self = ann.send(annId, "to myself");
  await assert.rejects(self.ack, (error) => error instanceof ChatError && error.code === "bad_request");
  const nobody = ann.send(2 ** 40, "to nobody");
  await assert.rejects(nobody.ack, (error) => error instanceof ChatError && error.code === "not_found");
  assert.deepEqual(ann.outbox(), []);
  assert.deepEqual(
    errors.map((e) => [e.payload.code, e.payload.clientMsgId]),
    [
      ["bad_request", self.clientMsgId],
      ["not_found", nobody.clientMsgId],
    ]
  );
});

test("an offline backlog arrives in batches, in order, once, and is acknowledged", async () => {
  const ann = await connected("Ann");
  const storage = new MemoryStorage();
  const bob = makeClient(server.baseUrl, { storage });
  clients.push(bob);
  const bobId = (await bob.register(account("Bob"))).id;
  const acks = [];
  for (let i = 0; i < 150; i++) acks.push(ann.send(bobId, `m${i}`).ack);
  const sent = await Promise.all(acks);

  const messages = record(bob, ["message"]);
  bob.connect();
  await until(() => messages.length >= 150, 10000, "150 messages");
  // Two batches (100, then 50 once the first was acknowledged): every message once, in order.
  assert.deepEqual(
    messages.map((e) => e.payload.id),
    sent.map((s) => s.id)
  );
  assert.deepEqual(
    messages.map((e) => e.payload.message),
    sent.map((_, i) => `m${i}`)
  );
  // Acknowledged: all delivered on the server, so a new device of Bob gets no backlog.
  const deliveredAll = async () => {
    const page = await bob.history(/** @type {number} */ (ann.user?.id), { limit: 100 });
    return page.items.every((m) => m.deliveredAt !== null);
  };
  const deadline = Date.now() + 5000;
  while (!(await deliveredAll())) {
    assert.ok(Date.now() < deadline, "the backlog was not acknowledged");
    await new Promise((r) => setTimeout(r, 50));
  }
  const other = makeClient(server.baseUrl, { storage }); // a second connection of Bob's
  clients.push(other);
  assert.equal(await other.restore(), true);
  const otherMessages = record(other, ["message"]);
  const ready = nextEvent(other, "ready");
  other.connect();
  await ready;
  await other.onlineUsers(); // answered after the offline batch was written
  assert.deepEqual(otherMessages, []);
});

test("a message delivered twice on the wire is shown once", async () => {
  class DuplicatingWebSocket extends WebSocket {
    /** @param {string} url @param {string[]} protocols */
    constructor(url, protocols) {
      super(url, protocols);
      let echoing = false;
      this.addEventListener("message", (event) => {
        const data = String(event.data);
        if (echoing || !(data.includes('"messageReceived"') || data.includes('"offlineMessages"'))) return;
        echoing = true;
        this.emit("message", Buffer.from(data), false); // the same frame once more
        echoing = false;
      });
    }
  }
  const [ann, bob] = await Promise.all([connected("Ann"), connected("Bob", { WebSocket: DuplicatingWebSocket })]);
  const messages = record(bob, ["message"]);
  const first = await ann.send(/** @type {number} */ (bob.user?.id), "once").ack;
  const second = await ann.send(/** @type {number} */ (bob.user?.id), "twice").ack;
  await until(() => messages.length >= 2);
  await bob.onlineUsers(); // every frame before its answer was handled
  assert.deepEqual(
    messages.map((e) => e.payload.id),
    [first.id, second.id]
  );
});

test("typing and presence between contacts", async () => {
  const [ann, bob] = await Promise.all([connected("Ann"), connected("Bob")]);
  await befriend(ann, bob);
  const annId = /** @type {number} */ (ann.user?.id);
  const bobId = /** @type {number} */ (bob.user?.id);

  const typing = nextEvent(bob, "typing");
  ann.typing(bobId, true);
  assert.deepEqual(await typing, { from: annId, isTyping: true });
  const stopped = nextEvent(bob, "typing");
  ann.typing(bobId, false);
  assert.deepEqual(await stopped, { from: annId, isTyping: false });

  assert.deepEqual(await ann.onlineUsers([bobId]), [bobId]);
  const offline = nextEvent(ann, "presence", (p) => p.userId === bobId && !p.online);
  bob.disconnect();
  const gone = await offline;
  assert.match(gone.lastSeenAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(await ann.onlineUsers([bobId]), []);
  const back = nextEvent(ann, "presence", (p) => p.userId === bobId && p.online);
  bob.connect();
  assert.deepEqual(await back, { userId: bobId, online: true, lastSeenAt: null });
  // Over HTTP when the socket is down.
  ann.disconnect();
  assert.deepEqual(await ann.onlineUsers([bobId]), [bobId]);
});

test("history pages, the conversation list and search", async () => {
  const [ann, bob] = await Promise.all([connected("Annabel"), connected("Bob")]);
  const bobId = /** @type {number} */ (bob.user?.id);
  const annId = /** @type {number} */ (ann.user?.id);
  for (let i = 1; i <= 5; i++) await ann.send(bobId, `n${i}`).ack;

  const newest = await ann.history(bobId, { limit: 2 });
  assert.deepEqual(
    newest.items.map((m) => m.message),
    ["n4", "n5"]
  );
  assert.equal(newest.hasMore, true);
  const older = await ann.history(bobId, { before: newest.items[0].seq, limit: 10 });
  assert.deepEqual(
    older.items.map((m) => m.message),
    ["n1", "n2", "n3"]
  );
  assert.equal(older.hasMore, false);
  const newer = await ann.history(bobId, { after: older.items[0].seq, limit: 2 });
  assert.deepEqual(
    newer.items.map((m) => m.message),
    ["n2", "n3"]
  );

  const list = await bob.conversations({ limit: 10 });
  assert.equal(list.items[0].peer.id, annId);
  assert.equal(list.items[0].lastMessage.message, "n5");
  assert.equal(list.nextCursor, null);

  const email = /** @type {string} */ (ann.user?.email);
  assert.deepEqual(
    (await bob.searchUsers(email)).map((u) => u.id),
    [annId]
  );
  bob.disconnect(); // the same search over HTTP
  assert.deepEqual(
    (await bob.searchUsers(email)).map((u) => u.id),
    [annId]
  );
  assert.equal((await bob.getUser(annId)).name, "Annabel");
});

test("a refreshed token re-authenticates the open socket, without a reconnect; refreshes come on their own", async () => {
  const ann = await connected("Ann");
  const states = record(ann, ["state", "ready"]);
  const before = ann.session?.accessToken;
  await ann.refresh();
  assert.notEqual(ann.session?.accessToken, before);
  assert.deepEqual(states, []); // same socket: no state change, no new session
  assert.deepEqual(await ann.onlineUsers([]), []); // the socket still answers

  // On its own: refresh 1 s before the token expires, as if it lasted 1 s (it lasts 900 s).
  ann.refreshBeforeMs = /** @type {number} */ (ann.session?.expiresAt) - Date.now() - 1000;
  ann.planRefresh();
  const first = ann.session?.accessToken;
  await until(() => ann.session?.accessToken !== first, 5000, "a refresh");
  const second = ann.session?.accessToken;
  await until(() => ann.session?.accessToken !== second, 5000, "a second refresh");
  assert.deepEqual(await ann.onlineUsers([]), []);
  assert.deepEqual(states, []); // re-authenticated in place, never reconnected
  ann.disconnect();
});

test("a socket closed 4401 refreshes the token and reconnects", async () => {
  const [ann, bob] = await Promise.all([connected("Ann"), connected("Bob")]);
  const states = record(ann, ["state"]);
  const token = ann.session?.accessToken;
  const ready = nextEvent(ann, "ready");
  // Re-authenticating with another user's token: the server closes the socket 4401.
  ann.write(ann.socket, { type: "auth", token: bob.session?.accessToken });
  await ready;
  assert.notEqual(ann.session?.accessToken, token);
  assert.deepEqual(
    states.map((e) => [e.payload.state, e.payload.closeCode]),
    [
      ["offline", 4401],
      ["connecting", undefined],
      ["online", undefined],
    ]
  );
});

test("a socket gone silent (no close, no pong) is dropped by the heartbeat and replaced", async () => {
  const proxy = await new FreezingProxy(server.port).start();
  try {
    const ann = await connected("Ann");
    const bob = makeClient(proxy.baseUrl, { heartbeatMs: 200 });
    clients.push(bob);
    await bob.register(account("Bob"));
    const ready = nextEvent(bob, "ready");
    bob.connect();
    await ready;
    const states = record(bob, ["state"]);
    const again = nextEvent(bob, "ready");
    proxy.freeze(); // the open socket hears nothing more, and is not closed either
    await again; // dropped after a ping without pong (≤ 2 × 200 ms), reconnected through the proxy
    assert.deepEqual(
      states.map((e) => [e.payload.state, e.payload.closeCode]),
      [
        ["offline", 1006],
        ["connecting", undefined],
        ["online", undefined],
      ]
    );
    const got = nextEvent(bob, "message");
    await ann.send(/** @type {number} */ (bob.user?.id), "still there?").ack;
    assert.equal((await got).message, "still there?");
  } finally {
    for (const client of clients.splice(0)) client.disconnect();
    await proxy.close();
  }
});

test("logout-all closes the other devices 4403: signed out, no retry", async () => {
  const details = account("Ann");
  const storage = new MemoryStorage();
  const phone = makeClient(server.baseUrl, { storage });
  clients.push(phone);
  await phone.register(details);
  const ready = nextEvent(phone, "ready");
  phone.connect();
  await ready;
  const states = record(phone, ["state"]);

  const laptop = makeClient(server.baseUrl, { storage }); // another tab of the same login
  assert.equal(await laptop.restore(), true);
  await laptop.logoutAll();
  assert.equal(laptop.user, null);

  await until(() => phone.state === "signedOut");
  assert.equal(phone.user, null);
  assert.equal(await storage.get("p2p-chat:session"), undefined);
  // No reconnect: give a retry every chance to happen (the backoff is 50–400 ms).
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(
    states.map((e) => e.payload.state),
    ["signedOut"]
  );
});

test("a page reload keeps the session and sends what was queued offline exactly once", async () => {
  const bob = await connected("Bob");
  const bobId = /** @type {number} */ (bob.user?.id);
  const storage = new MemoryStorage();
  const before = makeClient(server.baseUrl, { storage });
  const details = account("Ann");
  await before.register(details);
  const queued = before.send(bobId, "typed offline"); // never connected: stays in the outbox

  const after = makeClient(server.baseUrl, { storage }); // the reloaded page
  const outboxes = record(after, ["outbox"]);
  assert.equal(await after.restore(), true);
  assert.equal(after.user?.email, details.email);
  assert.deepEqual(
    after.outbox().map((item) => item.clientMsgId),
    [queued.clientMsgId]
  );
  const sent = nextEvent(after, "sent");
  const got = record(bob, ["message"]);
  after.connect();
  clients.push(after);
  assert.equal((await sent).clientMsgId, queued.clientMsgId);
  await until(() => got.length === 1);
  assert.deepEqual(after.outbox(), []);
  assert.deepEqual(outboxes.at(-1)?.payload.items, []);
  const page = await bob.history(/** @type {number} */ (after.user?.id));
  assert.deepEqual(
    page.items.map((m) => m.message),
    ["typed offline"]
  );
  assert.equal(await makeClient(server.baseUrl).restore(), false); // nothing saved elsewhere
});

test("a connection over the user's limit (4430) backs off, then gets in", async () => {
  const storage = new MemoryStorage();
  const devices = [0, 1, 2].map(() => makeClient(server.baseUrl, { storage }));
  clients.push(...devices);
  await devices[0].register(account("Ann"));
  for (const device of devices.slice(1)) assert.equal(await device.restore(), true); // same login
  for (const device of devices.slice(0, 2)) {
    const ready = nextEvent(device, "ready");
    device.connect();
    await ready;
  }
  const refused = nextEvent(devices[2], "state", (s) => s.closeCode === 4430);
  devices[2].connect();
  const state = await refused;
  assert.equal(state.state, "offline");
  assert.ok(state.retryInMs >= 200, `backed off ${state.retryInMs} ms`); // initialMs 50 × 2^3 / 2 at least
  const ready = nextEvent(devices[2], "ready", () => true, 10000);
  devices[0].disconnect();
  await ready;
  assert.equal(devices[2].state, "online");
  devices[1].disconnect();
  devices[2].disconnect();
});

test("a server killed and restarted mid-conversation: nothing lost, nothing shown twice", async () => {
  const [ann, bob] = await Promise.all([connected("Ann"), connected("Bob")]);
  const annId = /** @type {number} */ (ann.user?.id);
  const bobId = /** @type {number} */ (bob.user?.id);
  const annStates = record(ann, ["state"]);
  const bobStates = record(bob, ["state"]);
  const shown = record(bob, ["message"]);
  const sent = record(ann, ["sent"]);
  /** @type {Array<{clientMsgId: string, ack: Promise<any>}>} */
  const sends = [];
  const say = (/** @type {number} */ i) => sends.push(ann.send(bobId, `m${i}`));

  try {
    for (let i = 0; i < 5; i++) say(i);
    await Promise.all(sends.map((s) => s.ack));
    // Bob answers once, so the conversation goes both ways.
    await bob.send(annId, "go on").ack;

    for (let i = 5; i < 10; i++) say(i); // on the wire, some committed, their acks maybe not sent
    await server.stop("SIGKILL");
    await until(() => ann.state !== "online" && bob.state !== "online", 5000, "both clients offline");
    for (let i = 10; i < 15; i++) say(i); // typed while the server is down: queued
    assert.ok(ann.outbox().length >= 5);

    await server.start(); // same port, same database
    const acks = await Promise.all(sends.map((s) => s.ack));
    await until(() => shown.length >= 15, 10000, "Bob shows 15 messages");
    await bob.onlineUsers(); // every frame sent before its answer was handled: no late duplicate

    // Nothing lost, nothing stored twice: the history holds each send once, in send order.
    const history = await bob.history(annId, { limit: 100 });
    const fromAnn = history.items.filter((m) => m.from === annId);
    assert.deepEqual(
      fromAnn.map((m) => m.message),
      Array.from({ length: 15 }, (_, i) => `m${i}`)
    );
    assert.deepEqual(
      fromAnn.map((m) => m.clientMsgId),
      sends.map((s) => s.clientMsgId)
    );
    assert.deepEqual(
      fromAnn.map((m) => m.id),
      acks.map((a) => a.id)
    );
    // Nothing shown twice: one event per id, the same 15 messages.
    const ids = shown.map((e) => e.payload.id);
    assert.equal(new Set(ids).size, ids.length, "a message was shown twice");
    assert.deepEqual(
      [...shown].sort((x, y) => x.payload.seq - y.payload.seq).map((e) => e.payload.message),
      Array.from({ length: 15 }, (_, i) => `m${i}`)
    );
    assert.equal(new Set(sent.map((e) => e.payload.clientMsgId)).size, 15);
    assert.deepEqual(ann.outbox(), []);

    // The reconnect path really ran: a dropped socket (1006), then attempts until the restart.
    for (const states of [annStates, bobStates]) {
      assert.ok(states.some((e) => e.payload.state === "offline" && e.payload.closeCode === 1006));
      assert.ok(states.some((e) => e.payload.state === "connecting" && e.payload.attempt >= 1));
      assert.equal(states.at(-1)?.payload.state, "online");
    }
  } finally {
    ann.disconnect();
    bob.disconnect();
  }
});

test("IndexedDBStorage: a reload keeps the session and the offline outbox, sent once", async () => {
  const indexedDB = new IDBFactory(); // the browser's API, in memory
  const bob = await connected("Bob");
  const bobId = /** @type {number} */ (bob.user?.id);
  const page = makeClient(server.baseUrl, { storage: new IndexedDBStorage({ indexedDB }) });
  await page.register(account("Ann"));
  const queued = page.send(bobId, "typed offline, then reloaded");
  await page.writes; // the outbox is saved (the page is reloaded once that happened)

  const reloaded = makeClient(server.baseUrl, { storage: new IndexedDBStorage({ indexedDB }) });
  clients.push(reloaded);
  assert.equal(await reloaded.restore(), true);
  assert.deepEqual(reloaded.user, page.user);
  assert.deepEqual(
    reloaded.outbox().map((item) => [item.clientMsgId, item.message]),
    [[queued.clientMsgId, "typed offline, then reloaded"]]
  );
  const got = record(bob, ["message"]);
  const sent = nextEvent(reloaded, "sent");
  reloaded.connect();
  assert.equal((await sent).clientMsgId, queued.clientMsgId);
  await until(() => got.length === 1);
  await bob.ping();
  assert.equal(got.length, 1);
  // Acknowledged: gone from the storage too, so a second reload sends nothing again.
  await until(() => reloaded.outbox().length === 0);
  await reloaded.writes;
  const again = makeClient(server.baseUrl, { storage: new IndexedDBStorage({ indexedDB }) });
  assert.equal(await again.restore(), true);
  assert.deepEqual(again.outbox(), []);
  // Logging out forgets the session and the outbox.
  await reloaded.logout();
  assert.equal(await makeClient(server.baseUrl, { storage: new IndexedDBStorage({ indexedDB }) }).restore(), false);
});
