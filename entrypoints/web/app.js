// p2p-chat web app: plain DOM code over the JavaScript SDK (served next to it as chat.js).
// The SDK does the hard parts (socket, reconnects, outbox, de-duplication); this file keeps a
// small view model — people, conversations, the open conversation's messages — and draws it.
import { ChatClient, IndexedDBStorage } from "./chat.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const TYPING_IDLE_MS = 3000; // stop "typing" after this long without a key
const TYPING_SHOWN_MS = 6000; // hide a peer's "typing" if no stop came
const PAGE = Number(params.get("pageSize") || 30); // history page

const client = new ChatClient({
  baseUrl: location.origin,
  storage: new IndexedDBStorage(),
  reconnect: { initialMs: Number(params.get("reconnectMs") || 500), maxMs: Number(params.get("reconnectMaxMs") || 10000) },
});
window.chat = client; // for the console (and the browser test)

const state = {
  me: null,
  people: new Map(), // id → {id, name, online, lastSeenAt}
  conversations: new Map(), // peerId → {peerId, last, unreadCount, lastReadSeq, peerLastReadSeq}
  messages: new Map(), // peerId → Map(id → Message)
  older: new Map(), // peerId → more history below what is loaded
  loaded: new Set(), // peers whose latest page was fetched
  pending: [], // the outbox: [{clientMsgId, to, message, createdAt}]
  texts: new Map(), // clientMsgId → text, until its ack turned it into a message
  active: null, // the open conversation's peer id
  typingTimer: null, // peer typing indicator expiry
  typingSent: null, // our own "typing" stop timer
};

// ---- helpers ---------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

function lastSeen(person) {
  if (!person || person.online === null || person.online === undefined) return "";
  if (person.online) return "online";
  if (!person.lastSeenAt) return "offline";
  const when = new Date(person.lastSeenAt);
  const today = when.toDateString() === new Date().toDateString();
  return `last seen ${today ? "" : when.toLocaleDateString() + " "}${time(person.lastSeenAt)}`;
}

function describe(error) {
  // a ChatError: `errors` names the fields of a refused form
  if (error?.errors?.length) return error.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  return error?.message ?? String(error);
}

function showProblem(text) {
  const box = $("#problem");
  box.textContent = text || "";
  box.hidden = !text;
}

function announce(text) {
  $("#announcer").textContent = text;
}

function remember(person) {
  if (!person) return;
  const known = state.people.get(person.id) ?? {};
  state.people.set(person.id, { ...known, ...person });
}

async function person(id) {
  if (!state.people.has(id)) {
    try {
      remember(await client.getUser(id));
    } catch {
      remember({ id, name: `User ${id}`, online: null, lastSeenAt: null });
    }
  }
  return state.people.get(id);
}

const peerOf = (m) => (m.from === state.me.id ? m.to : m.from);
const store = (peerId) => {
  if (!state.messages.has(peerId)) state.messages.set(peerId, new Map());
  return state.messages.get(peerId);
};

function conversation(peerId) {
  if (!state.conversations.has(peerId)) {
    state.conversations.set(peerId, { peerId, last: null, unreadCount: 0, lastReadSeq: 0, peerLastReadSeq: 0 });
  }
  return state.conversations.get(peerId);
}

function addMessage(m) {
  const peerId = peerOf(m);
  const messages = store(peerId);
  const known = messages.get(m.id);
  messages.set(m.id, known ? { ...known, ...m, deliveredAt: m.deliveredAt ?? known.deliveredAt, readAt: m.readAt ?? known.readAt } : m);
  const conv = conversation(peerId);
  if (!conv.last || m.seq >= conv.last.seq) conv.last = messages.get(m.id);
  return peerId;
}

// ---- drawing ---------------------------------------------------------------------------------

function drawConnection(status) {
  const box = $("#connection");
  box.dataset.state = status.state;
  if (status.attempt !== undefined) box.dataset.attempt = String(status.attempt);
  const words = { online: "Online", connecting: "Connecting…", offline: "Offline", signedOut: "Signed out" };
  const retry = status.retryInMs !== undefined ? `, retrying in ${Math.ceil(status.retryInMs / 1000)} s` : "";
  const attempt = status.state !== "online" && status.attempt ? ` (attempt ${status.attempt}${retry})` : "";
  box.textContent = (words[status.state] ?? status.state) + attempt;
}

function drawConversations() {
  const list = $("#conversations");
  const items = [...state.conversations.values()]
    .filter((c) => c.last || state.pending.some((p) => p.to === c.peerId))
    .sort((a, b) => (b.last?.timestamp ?? "9").localeCompare(a.last?.timestamp ?? "9"));
  list.replaceChildren(
    ...items.map((c) => {
      const peer = state.people.get(c.peerId) ?? { name: "…" };
      const unread = c.unreadCount > 0 ? el("span", { className: "badge", "aria-label": `${c.unreadCount} unread` }, String(c.unreadCount)) : null;
      const preview = c.last ? `${c.last.from === state.me.id ? "You: " : ""}${c.last.message}` : "Sending…";
      return el(
        "li",
        { dataset: { peerId: String(c.peerId) } },
        el(
          "button",
          { type: "button", "aria-current": String(c.peerId === state.active), onclick: () => openConversation(c.peerId) },
          el("span", { className: "dot", dataset: { online: String(Boolean(peer.online)) }, "aria-label": peer.online ? "online" : "offline" }),
          el("span", { className: "name" }, peer.name),
          unread ?? el("span"),
          el("span", { className: "preview" }, preview),
        ),
      );
    }),
  );
  if (!items.length) list.replaceChildren(el("li", { className: "empty" }, "No conversations yet: find someone above."));
  const unread = [...state.conversations.values()].reduce((sum, c) => sum + c.unreadCount, 0);
  document.title = unread ? `(${unread}) p2p-chat` : "p2p-chat";
}

function tick(m, conv) {
  if (m.readAt || m.seq <= conv.peerLastReadSeq) return ["read", "✓✓", "Read"];
  if (m.deliveredAt) return ["delivered", "✓✓", "Delivered"];
  return ["sent", "✓", "Sent"];
}

function drawMessage(m, conv) {
  const mine = m.from === state.me.id;
  const [status, mark, label] = mine ? tick(m, conv) : [null];
  return el(
    "li",
    { className: mine ? "msg mine" : "msg theirs", dataset: { id: m.id, seq: String(m.seq), status: status ?? "received" } },
    el("span", { className: "text" }, m.message),
    el(
      "span",
      { className: "meta" },
      el("time", { dateTime: m.timestamp }, time(m.timestamp)),
      mine ? el("span", { className: "tick", dataset: { status }, "aria-label": label, title: label }, mark) : null,
    ),
  );
}

function drawPending(p) {
  return el(
    "li",
    { className: "msg mine", dataset: { clientMsgId: p.clientMsgId, status: "pending" } },
    el("span", { className: "text" }, p.message),
    el("span", { className: "meta" }, "waiting for the network", el("span", { className: "tick", dataset: { status: "pending" }, "aria-label": "Pending", title: "Pending" }, "◷")),
  );
}

function drawChat({ keepBottom = true } = {}) {
  const peerId = state.active;
  $("#chat").hidden = peerId === null;
  document.body.dataset.view = peerId === null ? "list" : "chat";
  if (peerId === null) return;
  const peer = state.people.get(peerId) ?? { name: "…" };
  const conv = conversation(peerId);
  $("#peer-name").textContent = peer.name;
  const presence = $("#peer-presence");
  presence.textContent = lastSeen(peer);
  presence.dataset.online = String(Boolean(peer.online));
  $("#older").hidden = !state.older.get(peerId);

  const scroller = $("#scroller");
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const messages = [...store(peerId).values()].sort((a, b) => a.seq - b.seq);
  $("#messages").replaceChildren(
    ...messages.map((m) => drawMessage(m, conv)),
    ...state.pending.filter((p) => p.to === peerId).map(drawPending),
  );
  if (keepBottom && atBottom) scroller.scrollTop = scroller.scrollHeight;
  else scroller.scrollTop = scroller.scrollHeight - fromBottom; // older ones added above: stay put
}

function drawAll() {
  if (!state.me) return;
  drawConversations();
  drawChat();
}

// ---- reading ---------------------------------------------------------------------------------

function markReadIfSeen() {
  const peerId = state.active;
  if (peerId === null || document.visibilityState !== "visible") return;
  const conv = conversation(peerId);
  const unreadFromPeer = [...store(peerId).values()].filter((m) => m.from === peerId && m.seq > conv.lastReadSeq);
  if (!unreadFromPeer.length && conv.unreadCount === 0) return;
  const upToSeq = Math.max(conv.lastReadSeq, conv.last?.seq ?? 0, ...unreadFromPeer.map((m) => m.seq));
  client.markRead(peerId, upToSeq); // sent now, or once the socket is back
  conv.lastReadSeq = upToSeq;
  conv.unreadCount = 0;
  drawConversations();
}

async function loadLatest(peerId) {
  const { items, hasMore } = await client.history(peerId, { limit: PAGE });
  items.forEach(addMessage);
  state.older.set(peerId, hasMore);
  state.loaded.add(peerId);
}

async function catchUp(peerId) {
  // After a reconnect: what came meanwhile (another device may have acknowledged it).
  const known = [...store(peerId).values()];
  if (!known.length) return loadLatest(peerId);
  let after = Math.max(...known.map((m) => m.seq));
  for (;;) {
    const { items, hasMore } = await client.history(peerId, { after, limit: 100 });
    items.forEach(addMessage);
    if (!hasMore || !items.length) return;
    after = items[items.length - 1].seq;
  }
}

async function loadOlder() {
  const peerId = state.active;
  const seqs = [...store(peerId).values()].map((m) => m.seq);
  const { items, hasMore } = await client.history(peerId, { before: Math.min(...seqs), limit: PAGE });
  items.forEach(addMessage);
  state.older.set(peerId, hasMore);
  drawChat({ keepBottom: false });
  announce(`${items.length} older messages loaded`);
}

async function refreshConversations() {
  const page = await client.conversations({ limit: 100 });
  for (const item of page.items) {
    remember(item.peer);
    const conv = conversation(item.peer.id);
    Object.assign(conv, {
      unreadCount: item.unreadCount,
      lastReadSeq: Math.max(conv.lastReadSeq, item.lastReadSeq),
      peerLastReadSeq: Math.max(conv.peerLastReadSeq, item.peerLastReadSeq),
    });
    if (item.lastMessage) addMessage(item.lastMessage);
  }
}

async function openConversation(peerId) {
  state.active = peerId;
  history.replaceState(null, "", `#${peerId}`); // a reload reopens it
  $("#typing").textContent = "";
  await person(peerId);
  conversation(peerId);
  drawAll();
  if (!state.loaded.has(peerId)) {
    try {
      await loadLatest(peerId);
    } catch (error) {
      showProblem(describe(error));
    }
  }
  drawChat();
  markReadIfSeen();
  $("#text").focus();
}

// ---- events from the SDK ---------------------------------------------------------------------

client.on("state", (status) => {
  const box = $("#connection");
  if (status.state !== "online" && status.state !== "signedOut" && box.dataset.state === "online" && state.me) {
    box.dataset.reconnects = String(Number(box.dataset.reconnects) + 1); // lost: the SDK reconnects
  }
  drawConnection(status);
  if (status.state === "signedOut") signedOut();
});

client.on("ready", async () => {
  const box = $("#connection");
  box.dataset.readies = String(Number(box.dataset.readies) + 1);
  drawConnection({ state: "online", attempt: 0 });
  showProblem("");
  // Another device may have read messages meanwhile: closed conversations load afresh when opened.
  for (const peerId of [...state.loaded]) if (peerId !== state.active) state.loaded.delete(peerId);
  try {
    await refreshConversations();
    if (state.active !== null) await catchUp(state.active);
  } catch (error) {
    showProblem(describe(error));
  }
  drawAll();
  markReadIfSeen();
});

client.on("message", async (m) => {
  const peerId = addMessage(m);
  const peer = await person(peerId);
  const conv = conversation(peerId);
  if (m.from === peerId) {
    if (peerId === state.active) $("#typing").textContent = "";
    if (m.seq > conv.lastReadSeq && !(peerId === state.active && document.visibilityState === "visible")) conv.unreadCount += 1;
    announce(`New message from ${peer.name}: ${m.message}`);
  }
  drawAll();
  markReadIfSeen();
});

client.on("sent", (ack) => {
  const text = state.texts.get(ack.clientMsgId);
  state.pending = state.pending.filter((p) => p.clientMsgId !== ack.clientMsgId);
  if (text !== undefined) {
    addMessage({ ...ack, from: state.me.id, message: text, deliveredAt: null, readAt: null });
    state.texts.delete(ack.clientMsgId);
  } else {
    state.loaded.delete(ack.to); // sent before a reload: its text comes with the history
    if (ack.to === state.active) catchUp(ack.to).then(drawAll);
  }
  drawAll();
});

client.on("outbox", ({ items }) => {
  state.pending = items;
  for (const item of items) {
    state.texts.set(item.clientMsgId, item.message);
    conversation(item.to);
    person(item.to).then(drawConversations);
  }
  drawAll();
});

client.on("delivered", ({ ids, to, deliveredAt }) => {
  const messages = store(to);
  for (const id of ids) {
    const m = messages.get(id);
    if (m && !m.deliveredAt) messages.set(id, { ...m, deliveredAt });
  }
  drawChat();
});

client.on("read", ({ by, peerId, upToSeq, readAt }) => {
  const conv = conversation(peerId);
  if (by === state.me.id) {
    // another of my devices read it
    conv.lastReadSeq = Math.max(conv.lastReadSeq, upToSeq);
    if (upToSeq >= (conv.last?.seq ?? 0)) conv.unreadCount = 0;
  } else {
    conv.peerLastReadSeq = Math.max(conv.peerLastReadSeq, upToSeq);
    const messages = store(peerId);
    for (const m of messages.values()) {
      if (m.from === state.me.id && m.seq <= upToSeq && !m.readAt) messages.set(m.id, { ...m, readAt, deliveredAt: m.deliveredAt ?? readAt });
    }
  }
  drawAll();
});

client.on("presence", ({ userId, online, lastSeenAt }) => {
  remember({ id: userId, online, lastSeenAt });
  drawAll();
});

client.on("typing", ({ from, isTyping }) => {
  if (from !== state.active) return;
  clearTimeout(state.typingTimer);
  const peer = state.people.get(from);
  $("#typing").textContent = isTyping ? `${peer?.name ?? "They"} is typing…` : "";
  if (isTyping) state.typingTimer = setTimeout(() => ($("#typing").textContent = ""), TYPING_SHOWN_MS);
});

client.on("error", (error) => {
  showProblem(`${error.code}: ${error.message}`);
});

// ---- user actions ----------------------------------------------------------------------------

function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

async function withButton(form, action) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    showProblem("");
    await action();
  } catch (error) {
    showProblem(describe(error));
  } finally {
    button.disabled = false;
  }
}

$("#sign-up").addEventListener("submit", (event) => {
  event.preventDefault();
  withButton(event.target, async () => {
    await client.register(formValues(event.target));
    signedIn();
  });
});

$("#sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  withButton(event.target, async () => {
    await client.login(formValues(event.target));
    signedIn();
  });
});

$("#sign-out").addEventListener("click", async () => {
  try {
    await client.logout();
  } finally {
    signedOut();
  }
});

$("#search").addEventListener("submit", (event) => {
  event.preventDefault();
  withButton(event.target, async () => {
    const q = formValues(event.target).q.trim();
    const users = (await client.searchUsers(q)).filter((u) => u.id !== state.me.id);
    users.forEach(remember);
    $("#results").replaceChildren(
      ...users.map((u) =>
        el(
          "li",
          { dataset: { userId: String(u.id) } },
          el(
            "button",
            { type: "button", onclick: () => { $("#results").replaceChildren(); $("#search-q").value = ""; openConversation(u.id); } },
            el("span", { className: "dot", dataset: { online: String(Boolean(u.online)) } }),
            el("span", { className: "name" }, u.name),
            el("span"),
            el("span", { className: "preview" }, lastSeen(u) || "start a conversation"),
          ),
        ),
      ),
    );
    if (!users.length) $("#results").replaceChildren(el("li", { className: "empty" }, `Nobody found for “${q}”.`));
    announce(`${users.length} found`);
  });
});

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#text");
  const text = input.value;
  if (!text.trim() || state.active === null) return;
  const { clientMsgId, ack } = client.send(state.active, text);
  state.texts.set(clientMsgId, text);
  if (!state.pending.some((p) => p.clientMsgId === clientMsgId)) {
    state.pending.push({ clientMsgId, to: state.active, message: text, createdAt: new Date().toISOString() });
  }
  ack?.catch?.((error) => showProblem(describe(error)));
  input.value = "";
  stopTyping();
  drawAll();
});

function stopTyping() {
  if (state.typingSent === null) return;
  clearTimeout(state.typingSent);
  state.typingSent = null;
  if (state.active !== null) client.typing(state.active, false);
}

$("#text").addEventListener("input", () => {
  if (state.active === null) return;
  if (!$("#text").value) return stopTyping();
  if (state.typingSent === null) client.typing(state.active, true);
  clearTimeout(state.typingSent);
  state.typingSent = setTimeout(stopTyping, TYPING_IDLE_MS);
});

$("#older").addEventListener("click", () => loadOlder().catch((error) => showProblem(describe(error))));
$("#back").addEventListener("click", () => {
  stopTyping();
  state.active = null;
  history.replaceState(null, "", location.pathname + location.search);
  drawAll();
  $("#search-q").focus();
});
document.addEventListener("visibilitychange", markReadIfSeen);

// ---- signed in / out -------------------------------------------------------------------------

function signedIn() {
  state.me = client.user;
  $("#whoami").textContent = `${state.me.name}`;
  $("#whoami").hidden = false;
  $("#sign-out").hidden = false;
  $("#auth").hidden = true;
  $("#home").hidden = false;
  document.body.dataset.view = "list";
  state.pending = client.outbox();
  for (const item of state.pending) state.texts.set(item.clientMsgId, item.message);
  drawAll();
  client.connect();
  const opened = /^#(\d+)$/.exec(location.hash);
  if (opened) openConversation(Number(opened[1]));
}

function signedOut() {
  client.disconnect();
  Object.assign(state, { me: null, active: null, pending: [] });
  for (const key of ["people", "conversations", "messages", "older", "texts"]) state[key].clear();
  state.loaded.clear();
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  $("#whoami").hidden = true;
  $("#sign-out").hidden = true;
  $("#home").hidden = true;
  $("#auth").hidden = false;
  document.body.dataset.view = "auth";
}

await client.restore();
if (client.user) signedIn();
else signedOut();
document.body.dataset.started = "true";
