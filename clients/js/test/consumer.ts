// A TypeScript program using the SDK through chat.d.ts: `npm run check` compiles it with --strict,
// so the published types stay usable (events typed by name, results typed, internals private).
import { ChatClient, ChatError, IndexedDBStorage, MemoryStorage } from "../chat.js";
import type { ConnectionState, Message, OutboxItem, Sent, UserPublic } from "../chat.js";

export async function example(): Promise<void> {
  const client = new ChatClient({ baseUrl: "http://127.0.0.1:8000", storage: new MemoryStorage() });
  const browser = new ChatClient({ storage: new IndexedDBStorage({ name: "chat" }), reconnect: { initialMs: 500 } });
  const off = client.on("message", (m: Message) => console.log(m.seq, m.from, m.message.toUpperCase()));
  client.on("state", ({ state, closeCode }) => {
    const s: ConnectionState = state;
    console.log(s, closeCode ?? 0);
  });
  client.on("presence", ({ userId, online, lastSeenAt }) => console.log(userId, online, lastSeenAt?.length));
  client.on("outbox", ({ items }) => items.map((item: OutboxItem) => item.clientMsgId));
  off();
  if (!(await client.restore())) await client.login({ email: "ann@example.com", password: "secret secret" });
  client.connect();
  const { clientMsgId, ack } = client.send(2, "hi");
  const sent: Sent = await ack;
  console.log(clientMsgId === sent.clientMsgId, sent.seq + 1);
  const users: UserPublic[] = await client.searchUsers("bob");
  const page = await client.history(users[0].id, { before: sent.seq, limit: 20 });
  const more: boolean = page.hasMore;
  const list = await client.conversations({ limit: 10 });
  console.log(more, list.items[0]?.unreadCount, list.nextCursor, (await client.onlineUsers()).length);
  try {
    await client.me();
  } catch (error) {
    if (error instanceof ChatError) console.log(error.code, error.status, error.errors?.[0]?.field);
  }
  client.disconnect();
  await browser.logout();
}
