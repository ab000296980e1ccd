// p2p-chat JavaScript SDK: one ES module, no dependencies, for browsers and Node (>= 22 with its
// global WebSocket, or any WebSocket class passed in, e.g. the `ws` package's on Node 20).
// The wire protocol is docs/protocol.md; the frame typedefs below are generated from
// docs/asyncapi.json (clients/js/scripts/build.mjs) and a test fails when they are stale.
// Reference: clients/js/README.md.

// <generated-frames> from docs/asyncapi.json by scripts/build.mjs: do not edit by hand
/**
 * Marks received messages delivered. Idempotent; ids not addressed to you are ignored. Their senders get `messageDelivered` for the newly delivered ones. No reply unless it fails.
 * @typedef {Object} AckMessagesFrame
 * @property {"ackMessages"} type
 * @property {string | null} [ref]
 * @property {Array<string>} ids
 */
/**
 * Authenticates the connection; answered with `ready`. The first frame, within `CHAT_AUTH_TIMEOUT_S`, unless the `bearer` subprotocol carried the token: any other first frame, or a bad, expired or revoked token, closes 4401; none in time closes 4408. Later, a fresh token of the same user before the current one expires re-authenticates: `ready` again (no offline replay); another user's token closes 4401.
 * @typedef {Object} AuthFrame
 * @property {"auth"} type
 * @property {string | null} [ref]
 * @property {string} token
 */
/**
 * A frame was refused, or failed; the connection stays usable.
 * @typedef {Object} ErrorFrame
 * @property {"error"} type
 * @property {string | null} [ref]
 * @property {WsErrorCode} code
 * @property {string} message
 * @property {string | null} [clientMsgId]
 */
/**
 * Asks who is online; answered with `onlineUsers`.
 * @typedef {Object} GetOnlineUsersFrame
 * @property {"getOnlineUsers"} type
 * @property {string | null} [ref]
 * @property {Array<number> | null} [userIds]
 */
/**
 * Marks a conversation read. Your read pointer of the conversation with `peerId` moves forward to `upToSeq` (never back, never past its last `seq`) and everything up to it is marked delivered and read; the peer and your other connections get `messagesRead`. No reply; an unknown conversation is `not_found`.
 * @typedef {Object} MarkReadFrame
 * @property {"markRead"} type
 * @property {string | null} [ref]
 * @property {number} peerId
 * @property {number} upToSeq
 */
/**
 * A `sendMessage` was committed. The same `clientMsgId` again gets the original `id`, `seq` and `timestamp`.
 * @typedef {Object} MessageAckFrame
 * @property {"messageAck"} type
 * @property {string | null} [ref]
 * @property {string} clientMsgId
 * @property {string} id
 * @property {number} seq
 * @property {number} to
 * @property {string} timestamp
 */
/**
 * To the sender: these messages to `to` were acknowledged by a device of the recipient.
 * @typedef {Object} MessageDeliveredFrame
 * @property {"messageDelivered"} type
 * @property {Array<string>} ids
 * @property {number} to
 * @property {string} deliveredAt
 */
/**
 * A message to you, or from you on another connection. New, or a re-push of a pending one this connection has not acknowledged in time. Acknowledge it with `ackMessages`; dedupe by `id`; order by `seq`.
 * @typedef {Object} MessageReceivedFrame
 * @property {"messageReceived"} type
 * @property {string} id
 * @property {number} seq
 * @property {number} from
 * @property {number} to
 * @property {string} message
 * @property {string} clientMsgId
 * @property {string} timestamp
 */
/**
 * A conversation was read. `by` read it up to `upToSeq`; `peerId` is the conversation's other user from your point of view (the reader for the peer, the peer for the reader's other devices).
 * @typedef {Object} MessagesReadFrame
 * @property {"messagesRead"} type
 * @property {number} by
 * @property {number} peerId
 * @property {number} upToSeq
 * @property {string} readAt
 */
/**
 * A batch of pending messages. The oldest (at most 100) in the order they were stored: exactly one batch after `ready`, and while `more` is true the next once every message of this one was acknowledged. A message may come again (live or in a later batch): dedupe by `id`.
 * @typedef {Object} OfflineMessagesFrame
 * @property {"offlineMessages"} type
 * @property {Array<WireMessage>} messages
 * @property {boolean} more
 */
/**
 * The answer to `getOnlineUsers`. Those online among the ids asked about (or among your contacts), only users whose presence is visible to you.
 * @typedef {Object} OnlineUsersFrame
 * @property {"onlineUsers"} type
 * @property {string | null} [ref]
 * @property {Array<number>} userIds
 */
/**
 * A contact is (not) typing to you. The first frames dropped when you read too slowly.
 * @typedef {Object} PeerTypingFrame
 * @property {"typing"} type
 * @property {number} from
 * @property {boolean} isTyping
 */
/**
 * An application-level check, answered with `pong` once every frame sent before it was handled.
 * @typedef {Object} PingFrame
 * @property {"ping"} type
 * @property {string | null} [ref]
 */
/**
 * The answer to `ping`.
 * @typedef {Object} PongFrame
 * @property {"pong"} type
 * @property {string | null} [ref]
 */
/**
 * The connection is authenticated. The first frame the server sends (then one `offlineMessages`), and the answer to a re-authentication.
 * @typedef {Object} ReadyFrame
 * @property {"ready"} type
 * @property {string | null} [ref]
 * @property {number} userId
 * @property {string} connectionId
 * @property {string} serverTime
 * @property {number} heartbeatS
 */
/**
 * The answer to `searchUsers`.
 * @typedef {Object} SearchResultsFrame
 * @property {"searchResults"} type
 * @property {string | null} [ref]
 * @property {string} query
 * @property {Array<UserPublic>} users
 */
/**
 * Searches users as `GET /users?q=` does; answered with `searchResults`.
 * @typedef {Object} SearchUsersFrame
 * @property {"searchUsers"} type
 * @property {string | null} [ref]
 * @property {string} query
 * @property {number | null} [limit]
 */
/**
 * Sends a message. Once it is committed the sender gets `messageAck`, and the recipient's connections and the sender's other connections get `messageReceived`. To yourself: `bad_request`; to an unknown user: `not_found`; over the rate limit: `rate_limited` and nothing stored (send it again later with the same `clientMsgId`).
 * @typedef {Object} SendMessageFrame
 * @property {"sendMessage"} type
 * @property {string | null} [ref]
 * @property {number} to
 * @property {string} message
 * @property {string} clientMsgId
 * @property {unknown} [from]
 */
/**
 * Tells a user you are (not) typing. Relayed as `typing` if you are contacts and no block exists either way, otherwise dropped without an error. Never stored, no reply.
 * @typedef {Object} TypingFrame
 * @property {"typing"} type
 * @property {string | null} [ref]
 * @property {number} to
 * @property {boolean} isTyping
 */
/**
 * A contact's last connection closed and `CHAT_OFFLINE_GRACE_S` passed without a reconnect.
 * @typedef {Object} UserOfflineFrame
 * @property {"userOffline"} type
 * @property {number} userId
 * @property {string} lastSeenAt
 */
/**
 * A contact is online: its first connection opened, or a message just made you contacts.
 * @typedef {Object} UserOnlineFrame
 * @property {"userOnline"} type
 * @property {number} userId
 */
/**
 * What anyone may see of another user. `online`/`lastSeenAt` are null unless visible.
 * @typedef {Object} UserPublic
 * @property {number} id
 * @property {string} name
 * @property {boolean | null} online
 * @property {string | null} lastSeenAt
 */
/**
 * A message as history, offline batches and the HTTP API show it.
 * @typedef {Object} WireMessage
 * @property {string} id
 * @property {number} seq
 * @property {number} from
 * @property {number} to
 * @property {string} message
 * @property {string} clientMsgId
 * @property {string} timestamp
 * @property {string | null} deliveredAt
 * @property {string | null} readAt
 */
/**
 * The `code` of an `error` frame:
 * @typedef {"bad_request" | "forbidden" | "internal" | "not_found" | "rate_limited" | "too_large" | "unknown_type"} WsErrorCode
 */
/** A frame the client sends. @typedef {AckMessagesFrame | AuthFrame | GetOnlineUsersFrame | MarkReadFrame | PingFrame | SearchUsersFrame | SendMessageFrame | TypingFrame} ClientFrame */
/** A frame the server sends. @typedef {ErrorFrame | MessageAckFrame | MessageDeliveredFrame | MessageReceivedFrame | MessagesReadFrame | OfflineMessagesFrame | OnlineUsersFrame | PeerTypingFrame | PongFrame | ReadyFrame | SearchResultsFrame | UserOfflineFrame | UserOnlineFrame} ServerFrame */
// </generated-frames>

/**
 * The signed-in user's own profile.
 * @typedef {{id: number, name: string, email: string, phoneNumber: string}} Profile
 */
/**
 * A message as events, history and offline batches carry it: `{id, seq, from, to, message,
 * clientMsgId, timestamp, deliveredAt, readAt}`.
 * @typedef {WireMessage} Message
 */
/**
 * A send waiting for its `messageAck`.
 * @typedef {{clientMsgId: string, to: number, message: string, createdAt: string}} OutboxItem
 */
/**
 * The acknowledgement of one of our sends.
 * @typedef {{clientMsgId: string, id: string, seq: number, to: number, timestamp: string}} Sent
 */
/**
 * @typedef {"offline" | "connecting" | "online" | "signedOut"} ConnectionState
 */
/**
 * @typedef {Object} StateEvent
 * @property {ConnectionState} state
 * @property {number} [attempt] consecutive failed connection attempts so far
 * @property {number} [closeCode] the close code of the socket that just closed
 * @property {number} [retryInMs] when the next attempt starts ("offline" with a retry planned)
 */
/**
 * @typedef {Object} ChatEvents
 * @property {StateEvent} state
 * @property {{userId: number, connectionId: string}} ready
 * @property {Message} message
 * @property {Sent} sent
 * @property {{items: OutboxItem[]}} outbox
 * @property {{ids: string[], to: number, deliveredAt: string}} delivered
 * @property {{by: number, peerId: number, upToSeq: number, readAt: string}} read
 * @property {{userId: number, online: boolean, lastSeenAt: string | null}} presence
 * @property {{from: number, isTyping: boolean}} typing
 * @property {{code: string, message: string, ref?: string, clientMsgId?: string}} error
 */
/**
 * A conversation of `GET /conversations`.
 * @typedef {{peer: UserPublic, lastMessage: Message, unreadCount: number, lastReadSeq: number,
 *   peerLastReadSeq: number}} Conversation
 */
/**
 * Key-value storage of the session and the outbox. Values are JSON-compatible; the methods may
 * return promises.
 * @typedef {Object} Storage
 * @property {(key: string) => unknown} get resolves to `undefined` when the key is absent
 * @property {(key: string, value: unknown) => unknown} set
 * @property {(key: string) => unknown} delete
 */
/**
 * What the SDK needs of a WebSocket: the browser's, Node 22's and the `ws` package's all fit.
 * @typedef {Object} WebSocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((event: any) => void) | null} onopen
 * @property {((event: any) => void) | null} onmessage
 * @property {((event: any) => void) | null} onclose
 * @property {((event: any) => void) | null} onerror
 */
/**
 * @typedef {new (url: string, protocols?: string | string[]) => WebSocketLike} WebSocketClass
 */
/**
 * @typedef {Object} ReconnectOptions
 * @property {number} [initialMs] the first retry waits up to this long (default 500)
 * @property {number} [maxMs] the longest wait between attempts (default 30000)
 */
/**
 * @typedef {Object} ChatClientOptions
 * @property {string} [baseUrl] the server, e.g. "http://127.0.0.1:8000" (default: the page's origin)
 * @property {string} [wsUrl] the socket address (default: baseUrl with ws(s):// and /ws)
 * @property {WebSocketClass} [WebSocket] default: globalThis.WebSocket
 * @property {typeof fetch} [fetch] default: globalThis.fetch
 * @property {Storage} [storage] default: a new MemoryStorage
 * @property {string} [storagePrefix] prefix of every storage key (default "p2p-chat:")
 * @property {ReconnectOptions} [reconnect]
 * @property {number} [requestTimeoutMs] socket requests (search, online users) and the handshake (default 10000)
 * @property {number} [refreshBeforeMs] refresh the access token this long before it expires
 *   (default: a fifth of its lifetime, at most 60 s)
 * @property {number} [heartbeatMs] send a `ping` this often and drop the socket when the previous
 *   one got no `pong` (default: the server's `heartbeatS`)
 */

/** @typedef {{accessToken: string, refreshToken: string, expiresAt: number, lifetimeMs: number, user: Profile}} Session */
/** @typedef {{access_token: string, refresh_token: string, token_type: string, expires_in: number, id: number, name: string, email: string, phoneNumber: string}} TokenResponse */
/** @typedef {{resolve: (frame: any) => void, reject: (error: Error) => void, timer: ReturnType<typeof setTimeout>}} Pending */
/**
 * One WebSocket and what belongs to it.
 * @typedef {Object} Socket
 * @property {WebSocketLike} ws
 * @property {boolean} ready
 * @property {Set<string>} sent clientMsgIds sent on this socket and not answered yet
 * @property {string[]} acks ids to acknowledge with the next ackMessages
 * @property {ReturnType<typeof setTimeout> | undefined} handshake
 * @property {ReturnType<typeof setInterval> | undefined} heartbeat
 * @property {string | null} pingRef the unanswered heartbeat ping
 */

/** Close codes after which the client backs off before reconnecting (docs/protocol.md). */
const BACK_OFF = new Set([1008, 1009, 1013, 4008, 4429, 4430]);
const SEEN_LIMIT = 10000;
const ACK_BATCH = 100;

/** An HTTP problem, a refused frame, or a request that could not complete. */
export class ChatError extends Error {
  /**
   * @param {string} code the problem `type` (HTTP), the `error` frame's `code`, or "network",
   *   "disconnected", "timeout", "signedOut"
   * @param {string} message
   * @param {{status?: number, errors?: Array<{field: string, message: string}>, retryAfter?: number,
   *   clientMsgId?: string, ref?: string}} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = "ChatError";
    this.code = code;
    this.status = details.status;
    this.errors = details.errors;
    this.retryAfter = details.retryAfter;
    this.clientMsgId = details.clientMsgId;
    this.ref = details.ref;
  }
}

/** Storage in memory: a session lasts as long as the page or process. */
export class MemoryStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.map = new Map();
  }
  /** @param {string} key */
  get(key) {
    const value = this.map.get(key);
    return value === undefined ? undefined : JSON.parse(value);
  }
  /** @param {string} key @param {unknown} value */
  set(key, value) {
    this.map.set(key, JSON.stringify(value));
  }
  /** @param {string} key */
  delete(key) {
    this.map.delete(key);
  }
}

/** Storage in the browser's IndexedDB: the session and the outbox survive a page reload. */
export class IndexedDBStorage {
  /** @param {{name?: string, indexedDB?: IDBFactory}} [options] */
  constructor(options = {}) {
    this.name = options.name ?? "p2p-chat";
    this.factory = options.indexedDB ?? globalThis.indexedDB;
    /** @type {Promise<IDBDatabase> | null} */
    this.opening = null;
  }
  /** @returns {Promise<IDBDatabase>} */
  db() {
    if (!this.opening) {
      this.opening = new Promise((resolve, reject) => {
        const request = this.factory.open(this.name, 1);
        request.onupgradeneeded = () => request.result.createObjectStore("kv");
        request.onsuccess = () => {
          const db = request.result;
          const forget = () => {
            this.opening = null; // reopened on next use
          };
          db.onversionchange = () => {
            db.close(); // let another tab upgrade the database
            forget();
          };
          db.onclose = forget; // closed by the browser (storage cleared)
          resolve(db);
        };
        request.onerror = () => {
          this.opening = null;
          reject(request.error);
        };
      });
    }
    return this.opening;
  }
  /**
   * @param {IDBTransactionMode} mode
   * @param {(store: IDBObjectStore) => IDBRequest} action
   * @returns {Promise<any>}
   */
  async run(mode, action) {
    const db = await this.db();
    return new Promise((resolve, reject) => {
      const transaction = db.transaction("kv", mode);
      const request = action(transaction.objectStore("kv"));
      transaction.oncomplete = () => resolve(request.result);
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  }
  /** @param {string} key */
  get(key) {
    return this.run("readonly", (store) => store.get(key));
  }
  /** @param {string} key @param {unknown} value */
  set(key, value) {
    return this.run("readwrite", (store) => store.put(value, key));
  }
  /** @param {string} key */
  delete(key) {
    return this.run("readwrite", (store) => store.delete(key));
  }
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @returns {string} */
function uuid() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A timer that does not keep Node running by itself (a signed-in client without a socket would
 * otherwise hold a process open until its next token refresh); a no-op in browsers.
 * @template T
 * @param {T} timer
 * @returns {T}
 */
function unref(timer) {
  /** @type {any} */ (timer)?.unref?.();
  return timer;
}

/** @param {unknown} error */
function report(error) {
  const reportError = /** @type {any} */ (globalThis).reportError;
  if (typeof reportError === "function") reportError(error);
  else console.error(error);
}

/**
 * A p2p-chat client: account calls over HTTP, and one WebSocket kept open with reconnects, an
 * outbox, acknowledgements and de-duplication. See clients/js/README.md.
 */
export class ChatClient {
  /** @param {ChatClientOptions} [options] */
  constructor(options = {}) {
    /** @type {string} */
    const origin = /** @type {any} */ (globalThis).location?.origin ?? "";
    this.baseUrl = (options.baseUrl ?? origin).replace(/\/+$/, "");
    this.wsUrl = options.wsUrl ?? `${this.baseUrl.replace(/^http/, "ws")}/ws`;
    /** @private @type {WebSocketClass | undefined} */
    this.WebSocketClass = options.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    const fetchFn = options.fetch ?? globalThis.fetch;
    /** @private @type {typeof fetch} */
    this.fetchFn = (input, init) => fetchFn(input, init);
    /** @private @type {Storage} */
    this.storage = options.storage ?? new MemoryStorage();
    /** @private */
    this.prefix = options.storagePrefix ?? "p2p-chat:";
    /** @private */
    this.initialMs = options.reconnect?.initialMs ?? 500;
    /** @private */
    this.maxMs = options.reconnect?.maxMs ?? 30000;
    /** @private */
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    /** @private */
    this.refreshBeforeMs = options.refreshBeforeMs;
    /** @private */
    this.heartbeatMs = options.heartbeatMs;

    /** @type {Profile | null} the signed-in user */
    this.user = null;
    /** @type {ConnectionState} */
    this.state = "signedOut";
    /** @private @type {Session | null} */
    this.session = null;
    /** @private @type {OutboxItem[]} */
    this.items = [];
    /** @private @type {Map<string, {resolve: (sent: Sent) => void, reject: (error: Error) => void, promise: Promise<Sent>}>} */
    this.waiters = new Map();
    /** @private @type {Map<string, Set<(payload: any) => void>>} */
    this.handlers = new Map();
    /** @private @type {Map<string, Pending>} */
    this.pending = new Map();
    /** @private @type {Set<string>} message ids already emitted */
    this.seen = new Set();
    /** @private @type {Map<number, number>} markRead calls made while offline: peerId → upToSeq */
    this.reads = new Map();
    /** @private @type {Socket | null} */
    this.socket = null;
    /** @private */
    this.wanted = false;
    /** @private */
    this.opening = false;
    /** @private */
    this.attempt = 0;
    /** @private */
    this.nextRef = 0;
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */
    this.refreshTimer = undefined;
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */
    this.resendTimer = undefined;
    /** @private @type {Promise<void> | null} */
    this.refreshing = null;
    /** @private @type {Promise<unknown>} storage writes, in order (never rejects) */
    this.writes = Promise.resolve();
    /** @private the browser is back online: reconnect now rather than after the backoff */
    this.onOnline = () => {
      if (this.wanted && !this.socket && this.session) {
        clearTimeout(this.retryTimer);
        this.retryTimer = undefined;
        this.attempt = 0;
        this.open();
      }
    };
    /** @private the browser lost its network: the socket is dead even if it has not noticed */
    this.onOffline = () => {
      if (this.socket) this.drop(this.socket, 1006);
    };
  }

  // ---- events -------------------------------------------------------------------------------

  /**
   * Subscribes to an event; returns the function that unsubscribes.
   * @template {keyof ChatEvents} K
   * @param {K} name
   * @param {(payload: ChatEvents[K]) => void} handler
   * @returns {() => void}
   */
  on(name, handler) {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(handler);
    return () => this.off(name, handler);
  }

  /**
   * @template {keyof ChatEvents} K
   * @param {K} name
   * @param {(payload: ChatEvents[K]) => void} handler
   */
  off(name, handler) {
    this.handlers.get(name)?.delete(handler);
  }

  /**
   * @private
   * @template {keyof ChatEvents} K
   * @param {K} name
   * @param {ChatEvents[K]} payload
   */
  emit(name, payload) {
    for (const handler of [...(this.handlers.get(name) ?? [])]) {
      try {
        handler(payload);
      } catch (error) {
        report(error);
      }
    }
  }

  /**
   * @private
   * @param {ConnectionState} state
   * @param {Omit<StateEvent, "state">} [details]
   */
  setState(state, details = {}) {
    this.state = state;
    this.emit("state", { state, ...details });
  }

  // ---- session ------------------------------------------------------------------------------

  /**
   * Loads the session and the outbox saved in the storage. Resolves to true when signed in.
   * @returns {Promise<boolean>}
   */
  async restore() {
    const saved = /** @type {Session | undefined} */ (await this.storage.get(this.prefix + "session"));
    if (!saved || !saved.refreshToken || !saved.user) return false;
    await this.adopt(saved, false);
    return true;
  }

  /**
   * Creates an account and signs in.
   * @param {{name: string, email: string, phoneNumber: string, password: string}} account
   * @returns {Promise<Profile>}
   */
  async register(account) {
    const { name, email, phoneNumber, password } = account;
    const body = { name, email, phoneNumber, password };
    return this.signedIn(/** @type {TokenResponse} */ (await this.http("POST", "/auth/register", body, false)));
  }

  /**
   * @param {{email: string, password: string}} credentials
   * @returns {Promise<Profile>}
   */
  async login(credentials) {
    const body = { email: credentials.email, password: credentials.password };
    return this.signedIn(/** @type {TokenResponse} */ (await this.http("POST", "/auth/login", body, false)));
  }

  /** Signs this login out (server side too, when reachable) and forgets the session and the outbox. */
  async logout() {
    await this.endSession("/auth/logout");
  }

  /** Signs every login of the user out (their sockets close 4403), this one included. */
  async logoutAll() {
    await this.endSession("/auth/logout-all");
  }

  /** @private @param {string} path */
  async endSession(path) {
    const session = this.session;
    if (session) {
      try {
        await this.http("POST", path, undefined, true);
      } catch {
        // Signed out locally whatever the server said (an expired or revoked login is out already).
      }
    }
    const user = this.user;
    await this.signOut(false);
    if (user) {
      this.items = [];
      await this.store(() => this.storage.delete(`${this.prefix}outbox:${user.id}`));
    }
  }

  /**
   * Refreshes the access token now (the client also does it by itself before it expires) and
   * re-authenticates the open socket with it.
   * @returns {Promise<void>}
   */
  refresh() {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  /** @private */
  async doRefresh() {
    const before = this.session;
    if (!before) throw new ChatError("signedOut", "not signed in");
    const locks = /** @type {any} */ (globalThis).navigator?.locks;
    const exchange = async () => {
      // Another tab of the same storage may have refreshed meanwhile: refresh tokens are single
      // use, so take its tokens rather than spend ours a second time (that would revoke the login).
      const stored = /** @type {Session | undefined} */ (await this.storage.get(this.prefix + "session"));
      if (stored && stored.refreshToken !== before.refreshToken && stored.user?.id === before.user.id) {
        await this.adopt(stored, true);
        return;
      }
      /** @type {TokenResponse} */
      let tokens;
      try {
        tokens = /** @type {TokenResponse} */ (
          await this.http("POST", "/auth/refresh", { refresh_token: before.refreshToken }, false)
        );
      } catch (error) {
        if (error instanceof ChatError && error.status === 401 && this.session === before) await this.signOut(true);
        throw error;
      }
      if (this.session !== before) return; // signed out or in again meanwhile
      await this.adopt(this.toSession(tokens), true);
    };
    if (locks?.request) await locks.request(`${this.prefix}refresh`, exchange);
    else await exchange();
  }

  /**
   * @private
   * Whether the access token is (about to be) too old to use.
   * @param {Session} session
   */
  expiring(session) {
    return session.expiresAt - Date.now() < Math.min(5000, session.lifetimeMs / 4);
  }

  /** @private @param {TokenResponse} tokens @returns {Session} */
  toSession(tokens) {
    const lifetimeMs = tokens.expires_in * 1000;
    return {
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      expiresAt: Date.now() + lifetimeMs,
      lifetimeMs,
      user: { id: tokens.id, name: tokens.name, email: tokens.email, phoneNumber: tokens.phoneNumber },
    };
  }

  /** @private @param {TokenResponse} tokens */
  async signedIn(tokens) {
    const session = this.toSession(tokens);
    if (this.user && this.user.id !== session.user.id) await this.signOut(false);
    await this.adopt(session, true);
    return session.user;
  }

  /**
   * @private
   * Makes `session` the current one: saves it, loads the user's outbox when the user changes,
   * plans the next refresh and re-authenticates an open socket.
   * @param {Session} session
   * @param {boolean} save
   */
  async adopt(session, save) {
    const sameUser = this.user?.id === session.user.id;
    /** @type {OutboxItem[] | undefined} */
    let stored;
    if (!sameUser) {
      // This user's outbox from the storage; another user's stays there for their next sign-in.
      await this.writes;
      const key = `${this.prefix}outbox:${session.user.id}`;
      stored = /** @type {OutboxItem[] | undefined} */ (await this.storage.get(key));
    }
    this.session = session;
    this.user = session.user;
    if (!sameUser) {
      this.items = Array.isArray(stored) ? stored : [];
      this.seen.clear();
      this.emit("outbox", { items: this.outbox() });
    }
    if (save) await this.persist("session", session);
    if (this.state === "signedOut") this.setState("offline");
    this.planRefresh();
    const socket = this.socket;
    if (socket?.ready) {
      try {
        await this.request({ type: "auth", token: session.accessToken });
      } catch {
        // A refused re-auth closes the socket (4401), which reconnects after a refresh.
      }
    } else if (this.wanted && !socket && !this.retryTimer && !this.opening) {
      this.open();
    }
  }

  /** @private */
  planRefresh() {
    clearTimeout(this.refreshTimer);
    const session = this.session;
    if (!session) return;
    const lead = this.refreshBeforeMs ?? Math.min(60000, session.lifetimeMs / 5);
    const delay = Math.max(0, session.expiresAt - lead - Date.now());
    this.refreshTimer = unref(
      setTimeout(() => {
        this.refresh().catch(() => {
          // Unreachable server: try again a little later while the token lasts; the next connect
          // attempt refreshes first anyway.
          if (this.session === session) this.refreshTimer = unref(setTimeout(() => this.planRefresh(), 5000));
        });
      }, delay)
    );
  }

  /**
   * @private
   * Forgets the session (not the outbox: it is sent once the same user signs in again).
   * @param {boolean} revoked the server revoked the login (4403, or a refused refresh token)
   */
  async signOut(revoked) {
    this.wanted = revoked ? this.wanted : false;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.resendTimer);
    this.retryTimer = undefined;
    this.session = null;
    this.user = null;
    this.closeSocket(1000);
    this.failPending(new ChatError("signedOut", "signed out"));
    this.reads.clear();
    this.setState("signedOut");
    await this.store(() => this.storage.delete(this.prefix + "session"));
  }

  /** @private @param {string} key @param {unknown} value */
  async persist(key, value) {
    await this.store(() => this.storage.set(this.prefix + key, value));
  }

  /**
   * @private
   * Runs a storage write after the ones before it (each sees the state of its time, in order).
   * @param {() => unknown} action
   */
  store(action) {
    const done = this.writes.then(action);
    this.writes = done.catch(() => {}); // the caller hears of a failure; later writes still run
    return done;
  }

  // ---- HTTP ---------------------------------------------------------------------------------

  /**
   * @private
   * @param {string} method
   * @param {string} path
   * @param {unknown} body
   * @param {boolean} authed send the access token (refreshed first when it is about to expire)
   * @returns {Promise<unknown>}
   */
  async http(method, path, body, authed) {
    for (let attempt = 0; ; attempt++) {
      /** @type {Record<string, string>} */
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (authed) {
        if (!this.session) throw new ChatError("signedOut", "not signed in");
        if (this.expiring(this.session)) await this.refresh();
        if (!this.session) throw new ChatError("signedOut", "not signed in");
        headers.Authorization = `Bearer ${this.session.accessToken}`;
      }
      /** @type {Response} */
      let response;
      try {
        response = await this.fetchFn(this.baseUrl + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (error) {
        throw new ChatError("network", `cannot reach the server: ${error}`);
      }
      if (response.status === 401 && authed && attempt === 0 && this.session) {
        await this.refresh(); // the token expired or the clock is off; a revoked login signs out
        continue;
      }
      if (response.status === 204) return undefined;
      const text = await response.text();
      /** @type {any} */
      let data = undefined;
      try {
        data = text ? JSON.parse(text) : undefined;
      } catch {
        data = undefined;
      }
      if (response.ok) return data;
      const retryAfter = Number(response.headers.get("Retry-After")) || undefined;
      throw new ChatError(data?.type ?? "http_error", data?.detail ?? data?.title ?? `HTTP ${response.status}`, {
        status: response.status,
        errors: data?.errors,
        retryAfter,
      });
    }
  }

  /**
   * @private
   * @param {Record<string, string | number | undefined | null>} params
   * @returns {string}
   */
  query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null) search.set(key, String(value));
    const text = search.toString();
    return text ? `?${text}` : "";
  }

  /** The signed-in user's profile, from the server. @returns {Promise<Profile & {createdAt: string}>} */
  async me() {
    const profile = /** @type {Profile & {createdAt: string}} */ (await this.http("GET", "/users/me", undefined, true));
    return profile;
  }

  /** @param {number} id @returns {Promise<UserPublic>} */
  async getUser(id) {
    return /** @type {UserPublic} */ (await this.http("GET", `/users/${encodeURIComponent(id)}`, undefined, true));
  }

  /**
   * Finds users by exact email or phone number, or by a part of their name: over the socket when
   * it is online, else over HTTP.
   * @param {string} q
   * @param {{limit?: number}} [options]
   * @returns {Promise<UserPublic[]>}
   */
  async searchUsers(q, options = {}) {
    if (this.socket?.ready) {
      /** @type {SearchUsersFrame} */
      const frame = { type: "searchUsers", query: q };
      if (options.limit !== undefined) frame.limit = options.limit;
      const reply = /** @type {SearchResultsFrame} */ (await this.request(frame));
      return reply.users;
    }
    const page = /** @type {{items: UserPublic[]}} */ (
      await this.http("GET", `/users${this.query({ q, limit: options.limit })}`, undefined, true)
    );
    return page.items;
  }

  /**
   * Your contacts, a page at a time.
   * @param {{limit?: number, cursor?: string | null}} [options]
   * @returns {Promise<{items: UserPublic[], nextCursor: string | null}>}
   */
  async contacts(options = {}) {
    return /** @type {{items: UserPublic[], nextCursor: string | null}} */ (
      await this.http("GET", `/users${this.query({ limit: options.limit, cursor: options.cursor })}`, undefined, true)
    );
  }

  /**
   * The conversation list, most recent first.
   * @param {{limit?: number, cursor?: string | null}} [options]
   * @returns {Promise<{items: Conversation[], nextCursor: string | null}>}
   */
  async conversations(options = {}) {
    return /** @type {{items: Conversation[], nextCursor: string | null}} */ (
      await this.http("GET", `/conversations${this.query({ limit: options.limit, cursor: options.cursor })}`, undefined, true)
    );
  }

  /**
   * A page of the conversation with `peerId`, ascending by seq: the newest page, or the one just
   * below `before` / just above `after`.
   * @param {number} peerId
   * @param {{before?: number, after?: number, limit?: number}} [options]
   * @returns {Promise<{items: Message[], hasMore: boolean}>}
   */
  async history(peerId, options = {}) {
    const params = this.query({ before: options.before, after: options.after, limit: options.limit });
    return /** @type {{items: Message[], hasMore: boolean}} */ (
      await this.http("GET", `/conversations/${encodeURIComponent(peerId)}/messages${params}`, undefined, true)
    );
  }

  /**
   * Who is online among `ids` (or among your contacts): over the socket when online, else from
   * the contact list over HTTP.
   * @param {number[]} [ids]
   * @returns {Promise<number[]>}
   */
  async onlineUsers(ids) {
    if (this.socket?.ready) {
      /** @type {GetOnlineUsersFrame} */
      const frame = { type: "getOnlineUsers" };
      if (ids) frame.userIds = ids;
      const reply = /** @type {OnlineUsersFrame} */ (await this.request(frame));
      return reply.userIds;
    }
    /** @type {number[]} */
    const online = [];
    /** @type {string | null} */
    let cursor = null;
    do {
      const page = await this.contacts({ limit: 100, cursor });
      for (const user of page.items) if (user.online) online.push(user.id);
      cursor = page.nextCursor;
    } while (cursor);
    return ids ? online.filter((id) => ids.includes(id)) : online;
  }

  /**
   * Resolves once the server handled every frame sent before (its `pong`); rejects offline.
   * @returns {Promise<void>}
   */
  async ping() {
    await this.request({ type: "ping" });
  }

  /** @param {number} id blocks a user (idempotent) */
  async block(id) {
    await this.http("PUT", `/users/${encodeURIComponent(id)}/block`, undefined, true);
  }

  /** @param {number} id */
  async unblock(id) {
    await this.http("DELETE", `/users/${encodeURIComponent(id)}/block`, undefined, true);
  }

  // ---- messages -----------------------------------------------------------------------------

  /**
   * Queues a message at once (in the outbox, saved in the storage) and sends it as soon as the
   * socket is online; after a reconnect it is sent again with the same clientMsgId until acked.
   * @param {number} to
   * @param {string} text
   * @returns {{clientMsgId: string, ack: Promise<Sent>}}
   */
  send(to, text) {
    const user = this.user;
    if (!user) throw new ChatError("signedOut", "not signed in");
    const item = { clientMsgId: uuid(), to, message: text, createdAt: new Date().toISOString() };
    this.items.push(item);
    const ack = this.waiterFor(item.clientMsgId);
    this.saveOutbox(user.id);
    this.emit("outbox", { items: this.outbox() });
    this.flushOutbox();
    return { clientMsgId: item.clientMsgId, ack };
  }

  /** @private @param {string} clientMsgId @returns {Promise<Sent>} */
  waiterFor(clientMsgId) {
    const existing = this.waiters.get(clientMsgId);
    if (existing) return existing.promise;
    /** @type {(sent: Sent) => void} */
    let resolve = () => {};
    /** @type {(error: Error) => void} */
    let reject = () => {};
    /** @type {Promise<Sent>} */
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {}); // an app that ignores `ack` gets no unhandled rejection
    this.waiters.set(clientMsgId, { resolve, reject, promise });
    return promise;
  }

  /** The sends waiting for their acknowledgement, oldest first. @returns {OutboxItem[]} */
  outbox() {
    return this.items.map((item) => ({ ...item }));
  }

  /** @private @param {number} userId */
  saveOutbox(userId) {
    const snapshot = this.outbox();
    this.persist(`outbox:${userId}`, snapshot).catch(report);
  }

  /** @private */
  flushOutbox() {
    const socket = this.socket;
    if (!socket?.ready) return;
    for (const item of this.items) {
      if (socket.sent.has(item.clientMsgId)) continue;
      socket.sent.add(item.clientMsgId);
      this.write(socket, { type: "sendMessage", to: item.to, message: item.message, clientMsgId: item.clientMsgId });
    }
  }

  /**
   * Tells `to` that you are (not) typing; dropped while offline.
   * @param {number} to
   * @param {boolean} isTyping
   */
  typing(to, isTyping) {
    if (this.socket?.ready) this.write(this.socket, { type: "typing", to, isTyping });
  }

  /**
   * Marks the conversation with `peerId` read up to `upToSeq`; sent when the socket is online.
   * @param {number} peerId
   * @param {number} upToSeq
   */
  markRead(peerId, upToSeq) {
    this.reads.set(peerId, Math.max(upToSeq, this.reads.get(peerId) ?? 0));
    this.flushReads();
  }

  /** @private */
  flushReads() {
    const socket = this.socket;
    if (!socket?.ready) return;
    for (const [peerId, upToSeq] of this.reads) this.write(socket, { type: "markRead", peerId, upToSeq });
    this.reads.clear();
  }

  // ---- the socket ---------------------------------------------------------------------------

  /** Opens the socket and keeps it open (reconnecting) until disconnect() or a sign-out. */
  connect() {
    if (!this.WebSocketClass) throw new ChatError("unsupported", "no WebSocket class: pass options.WebSocket");
    this.wanted = true;
    const target = /** @type {any} */ (globalThis);
    if (typeof target.addEventListener === "function") {
      target.addEventListener("online", this.onOnline);
      target.addEventListener("offline", this.onOffline);
    }
    if (!this.socket && !this.retryTimer && !this.opening) this.open();
  }

  /** Closes the socket and stops reconnecting; the outbox is kept. */
  disconnect() {
    this.wanted = false;
    const target = /** @type {any} */ (globalThis);
    if (typeof target.removeEventListener === "function") {
      target.removeEventListener("online", this.onOnline);
      target.removeEventListener("offline", this.onOffline);
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.closeSocket(1000);
    if (this.session) this.setState("offline");
  }

  /** @private */
  async open() {
    this.retryTimer = undefined;
    if (!this.wanted || this.socket || this.opening) return;
    this.opening = true;
    /** @type {"retry" | "backOff" | undefined} */
    let failed;
    try {
      failed = await this.openSocket();
    } catch (error) {
      report(error);
      failed = "backOff";
    } finally {
      this.opening = false;
    }
    if (failed) this.retry(undefined, failed === "backOff");
  }

  /** @private @returns {Promise<"retry" | "backOff" | undefined>} how to retry when no socket was opened */
  async openSocket() {
    if (!this.session) {
      if (this.state !== "signedOut") this.setState("signedOut");
      return;
    }
    const WebSocketClass = /** @type {WebSocketClass} */ (this.WebSocketClass);
    this.setState("connecting", { attempt: this.attempt });
    if (this.expiring(this.session)) {
      try {
        await this.refresh();
      } catch (error) {
        return this.session && this.wanted ? "retry" : undefined;
      }
      if (!this.session || !this.wanted || this.socket) return;
    }
    /** @type {WebSocketLike} */
    let ws;
    try {
      ws = new WebSocketClass(this.wsUrl, ["bearer", this.session.accessToken]);
    } catch (error) {
      report(error);
      return "backOff";
    }
    /** @type {Socket} */
    const socket = { ws, ready: false, sent: new Set(), acks: [], handshake: undefined, heartbeat: undefined, pingRef: null };
    this.socket = socket;
    socket.handshake = setTimeout(() => this.drop(socket, 4000), this.requestTimeoutMs);
    ws.onmessage = (event) => {
      if (this.socket !== socket || typeof event.data !== "string") return;
      /** @type {ServerFrame} */
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.handle(socket, frame);
    };
    ws.onclose = (event) => this.closed(socket, Number(event.code) || 1006);
    ws.onerror = () => {}; // a close follows
  }

  /**
   * @private
   * The socket is gone (closed by the server, or dropped by us as dead).
   * @param {Socket} socket
   * @param {number} code
   */
  closed(socket, code) {
    if (this.socket !== socket) return;
    this.socket = null;
    clearTimeout(socket.handshake);
    clearInterval(socket.heartbeat);
    this.failPending(new ChatError("disconnected", `the connection closed (${code})`));
    if (!this.wanted || !this.session) return;
    if (code === 4403) {
      this.signOut(true).catch(report);
      return;
    }
    if (code === 4401) {
      // Refresh the token, then reconnect at once; if the last socket was refused too, after the
      // back-off (a server that keeps refusing must not get a tight loop of refreshes).
      const immediate = this.attempt === 0;
      if (immediate) {
        this.attempt = 1;
        this.setState("offline", { closeCode: code, attempt: this.attempt });
      } else {
        this.retry(code, false);
      }
      this.refresh().then(
        () => {
          if (immediate) this.retry(code, false, 0); // unless adopt() opened the socket already
        },
        () => {
          if (this.session) this.retry(code, true);
        }
      );
      return;
    }
    this.retry(code, BACK_OFF.has(code));
  }

  /**
   * @private
   * Plans the next connection attempt: exponential backoff with jitter.
   * @param {number | undefined} closeCode
   * @param {boolean} backOff a close code that asks clients to slow down
   * @param {number} [delayMs] a delay to use instead
   */
  retry(closeCode, backOff, delayMs) {
    if (!this.wanted || !this.session || this.socket || this.retryTimer || this.opening) return;
    if (backOff) this.attempt = Math.max(this.attempt, 3);
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    const delay = delayMs ?? Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt += 1;
    /** @type {Omit<StateEvent, "state">} */
    const details = { attempt: this.attempt, retryInMs: delay };
    if (closeCode !== undefined) details.closeCode = closeCode;
    this.setState("offline", details);
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /**
   * @private
   * Gives up on a socket that does not answer (handshake or heartbeat timeout).
   * @param {Socket} socket
   * @param {number} code
   */
  drop(socket, code) {
    try {
      socket.ws.onclose = null;
      socket.ws.close(4000, "unresponsive");
    } catch {
      // already closing
    }
    this.closed(socket, code);
  }

  /** @private @param {number} code */
  closeSocket(code) {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    clearTimeout(socket.handshake);
    clearInterval(socket.heartbeat);
    socket.ws.onclose = null;
    socket.ws.onmessage = null;
    try {
      socket.ws.close(code);
    } catch {
      // already closed
    }
    this.failPending(new ChatError("disconnected", "disconnected"));
  }

  /** @private @param {Error} error */
  failPending(error) {
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
  }

  /**
   * @private
   * @param {Socket} socket
   * @param {ClientFrame} frame
   */
  write(socket, frame) {
    if (socket.ws.readyState !== 1) return;
    try {
      socket.ws.send(JSON.stringify(frame));
    } catch (error) {
      report(error);
    }
  }

  /**
   * @private
   * Sends a frame with a fresh `ref` and resolves to its direct reply (rejects on `error`).
   * @param {ClientFrame} frame
   * @returns {Promise<ServerFrame>}
   */
  request(frame) {
    const socket = this.socket;
    if (!socket?.ready) return Promise.reject(new ChatError("disconnected", "not connected"));
    const ref = `r${++this.nextRef}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new ChatError("timeout", `no answer to ${frame.type}`));
      }, this.requestTimeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      this.write(socket, { ...frame, ref });
    });
  }

  /**
   * @private
   * @param {Socket} socket
   * @param {ServerFrame} frame
   */
  handle(socket, frame) {
    const ref = "ref" in frame ? frame.ref : undefined;
    if (ref && frame.type !== "error" && this.pending.has(ref)) {
      const pending = /** @type {Pending} */ (this.pending.get(ref));
      this.pending.delete(ref);
      clearTimeout(pending.timer);
      pending.resolve(frame);
    }
    switch (frame.type) {
      case "ready":
        if (!socket.ready) this.onReady(socket, frame);
        return;
      case "offlineMessages":
        for (const message of frame.messages) this.received(socket, message);
        this.flushAcks(socket);
        return;
      case "messageReceived":
        this.received(socket, {
          id: frame.id,
          seq: frame.seq,
          from: frame.from,
          to: frame.to,
          message: frame.message,
          clientMsgId: frame.clientMsgId,
          timestamp: frame.timestamp,
          deliveredAt: null,
          readAt: null,
        });
        queueMicrotask(() => this.flushAcks(socket));
        return;
      case "messageAck":
        this.acked(frame);
        return;
      case "messageDelivered":
        this.emit("delivered", { ids: frame.ids, to: frame.to, deliveredAt: frame.deliveredAt });
        return;
      case "messagesRead":
        this.emit("read", { by: frame.by, peerId: frame.peerId, upToSeq: frame.upToSeq, readAt: frame.readAt });
        return;
      case "userOnline":
        this.emit("presence", { userId: frame.userId, online: true, lastSeenAt: null });
        return;
      case "userOffline":
        this.emit("presence", { userId: frame.userId, online: false, lastSeenAt: frame.lastSeenAt });
        return;
      case "typing":
        this.emit("typing", { from: frame.from, isTyping: frame.isTyping });
        return;
      case "pong":
        if (ref && ref === socket.pingRef) socket.pingRef = null;
        return;
      case "error":
        this.refused(socket, frame);
        return;
      case "searchResults":
      case "onlineUsers":
        return; // answered above, by ref
      default: {
        /** @type {never} */
        const unhandled = frame; // every server frame of docs/asyncapi.json is handled above
        void unhandled;
      }
    }
  }

  /**
   * @private
   * @param {Socket} socket
   * @param {ReadyFrame} frame
   */
  onReady(socket, frame) {
    socket.ready = true;
    clearTimeout(socket.handshake);
    this.attempt = 0;
    const heartbeatMs = this.heartbeatMs ?? Math.max(1, frame.heartbeatS) * 1000;
    socket.heartbeat = setInterval(() => {
      if (socket.pingRef) {
        this.drop(socket, 1006); // the last ping got no pong within a heartbeat: a dead network
        return;
      }
      socket.pingRef = `h${++this.nextRef}`;
      this.write(socket, { type: "ping", ref: socket.pingRef });
    }, heartbeatMs);
    this.setState("online");
    this.emit("ready", { userId: frame.userId, connectionId: frame.connectionId });
    this.flushOutbox();
    this.flushReads();
  }

  /**
   * @private
   * @param {Socket} socket
   * @param {Message} message
   */
  received(socket, message) {
    socket.acks.push(message.id);
    if (this.seen.has(message.id)) return;
    this.remember(message.id);
    this.emit("message", message);
  }

  /** @private @param {string} id */
  remember(id) {
    this.seen.add(id);
    if (this.seen.size > SEEN_LIMIT) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  /** @private @param {Socket} socket */
  flushAcks(socket) {
    while (socket.acks.length) {
      const ids = socket.acks.splice(0, ACK_BATCH);
      this.write(socket, { type: "ackMessages", ids });
    }
  }

  /** @private @param {MessageAckFrame} frame */
  acked(frame) {
    const sent = { clientMsgId: frame.clientMsgId, id: frame.id, seq: frame.seq, to: frame.to, timestamp: frame.timestamp };
    this.remember(frame.id);
    this.socket?.sent.delete(frame.clientMsgId);
    const index = this.items.findIndex((item) => item.clientMsgId === frame.clientMsgId);
    if (index >= 0) {
      this.items.splice(index, 1);
      if (this.user) this.saveOutbox(this.user.id);
      this.emit("outbox", { items: this.outbox() });
    }
    const waiter = this.waiters.get(frame.clientMsgId);
    this.waiters.delete(frame.clientMsgId);
    if (index >= 0 || waiter) this.emit("sent", sent);
    waiter?.resolve(sent);
  }

  /**
   * @private
   * An `error` frame: rejects the request it answers, retries or fails a send, or is emitted.
   * @param {Socket} socket
   * @param {ErrorFrame} frame
   */
  refused(socket, frame) {
    const details = { ref: frame.ref ?? undefined, clientMsgId: frame.clientMsgId ?? undefined };
    const error = new ChatError(frame.code, frame.message, details);
    if (frame.ref && this.pending.has(frame.ref)) {
      const pending = /** @type {Pending} */ (this.pending.get(frame.ref));
      this.pending.delete(frame.ref);
      clearTimeout(pending.timer);
      pending.reject(error);
      return;
    }
    const clientMsgId = frame.clientMsgId;
    if (clientMsgId) {
      socket.sent.delete(clientMsgId);
      if (frame.code === "rate_limited" || frame.code === "internal") {
        // Nothing was stored: send it again a little later, with the same clientMsgId.
        clearTimeout(this.resendTimer);
        this.resendTimer = setTimeout(() => this.flushOutbox(), 1000);
        return;
      }
      const index = this.items.findIndex((item) => item.clientMsgId === clientMsgId);
      if (index >= 0) {
        this.items.splice(index, 1);
        if (this.user) this.saveOutbox(this.user.id);
        this.emit("outbox", { items: this.outbox() });
      }
      this.waiters.get(clientMsgId)?.reject(error);
      this.waiters.delete(clientMsgId);
    }
    /** @type {ChatEvents["error"]} */
    const payload = { code: frame.code, message: frame.message };
    if (frame.ref) payload.ref = frame.ref;
    if (clientMsgId) payload.clientMsgId = clientMsgId;
    this.emit("error", payload);
  }
}
