"""The web app in a real browser: Debian's chromium driven by Playwright, against the real server.

Two browser contexts (two profiles: their own IndexedDB; one desktop-sized, one phone-sized) sign
up, find each other (exact email, exact phone number, name), chat both ways, see unread counts,
typing and presence. Ann's page reaches the server through :class:`CuttableProxy`, which the
test takes offline (Playwright's offline emulation leaves open WebSockets alone): it cuts her
connections and refuses her WebSocket handshakes, while the page itself can still be loaded. Bob
sends three messages meanwhile; when the proxy lets her through again she shows them once and in
order, and both see read ticks. A message Ann sends while offline is still pending after a page
reload (the SDK's IndexedDB outbox) and is stored exactly once when the network returns. Then a
new tab restores the login and pages the history back, and signing out and in again works.

Chromium is never downloaded: ``/usr/bin/chromium`` (``CHAT_TEST_CHROMIUM`` to point elsewhere;
``.ci/run`` installs it with apt). Without it the test is skipped, or fails when ``CI=true``.
Screenshots of both pages go to the test's directory (its path is printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from tests.integration.support import make_container, make_settings, serve_async, unavailable

CHROMIUM = os.environ.get("CHAT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
]
WAIT_MS = 15_000  # the longest any expectation waits (they poll the page; nothing sleeps)
# Presence and reconnects on a test's time scale.
SERVER = {"CHAT_OFFLINE_GRACE_S": "0.5", "CHAT_REDELIVERY_S": "2"}
FAST_RECONNECT = "?reconnectMs=100&reconnectMaxMs=400"
PASSWORD = "correct horse battery"
# Resolves once the signed-in user's outbox saved in IndexedDB (under the key clients/js/README.md
# documents) holds a message with this text (a condition polled in the page).
SAVED_OUTBOX = """async (text) => {
  const { IndexedDBStorage } = await import("/app/chat.js");
  const storage = new IndexedDBStorage();
  for (;;) {
    const saved = await storage.get(`p2p-chat:outbox:${chat.user.id}`);
    if ((saved ?? []).some((item) => item.message === text)) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}"""

expect.set_options(timeout=WAIT_MS)


@pytest.fixture
def backend() -> str:
    """What is tested is the browser side: SQLite only."""
    return "sqlite"


@pytest.fixture
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no chromium at {CHROMIUM}: apt-get install chromium (or set CHAT_TEST_CHROMIUM)")
    return CHROMIUM


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 to the server. :meth:`cut` aborts every connection it carries and
    refuses WebSocket handshakes (``GET /ws``) until :meth:`restore`; HTTP still passes, so the page
    and the HTTP API load while the live connection is down."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.offline = False
        self.refused = 0
        self.refusal = asyncio.Event()
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.offline = True
        self.refusal.clear()
        for writer in list(self._open):
            writer.transport.abort()

    def restore(self) -> None:
        self.offline = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            first = await reader.readline()
            if self.offline and first.startswith(b"GET /ws"):
                self.refused += 1
                self.refusal.set()
                return
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._open.add(upstream)
            upstream.write(first)
            pumps = [asyncio.create_task(_pump(reader, upstream)), asyncio.create_task(_pump(up_reader, writer))]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._open.discard(end)
                    end.transport.abort()


async def _pump(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            target.write(chunk)
            await target.drain()


@contextlib.asynccontextmanager
async def proxy_to(base_url: str) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(int(base_url.rsplit(":", 1)[1]))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def open_app(context: BrowserContext, url: str, errors: list[str], query: str = "") -> Page:
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{url}: {error}"))
    await page.goto(f"{url}/app/{FAST_RECONNECT}{query}")
    await expect(page.locator("body")).to_have_attribute("data-started", "true")
    return page


async def sign_up(page: Page, name: str, email: str, phone: str) -> None:
    form = page.locator("#sign-up")
    await form.get_by_label("Name").fill(name)
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Phone number").fill(phone)
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Create account").click()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    await expect(page.locator("#whoami")).to_have_text(name)


async def send(page: Page, text: str) -> None:
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_label("Message", exact=True).press("Enter")


async def until(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT_MS / 1000)


async def test_two_people_chat_in_the_browser_through_a_cut_and_a_reload(
    chromium: str, migrated_url: str, tmp_path: Path
) -> None:
    async with (
        serve_async(make_container(make_settings(migrated_url, SERVER))) as base_url,
        proxy_to(base_url) as proxy,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        errors: list[str] = []  # uncaught exceptions and rejections in either page
        bobs = await browser.new_context(viewport={"width": 390, "height": 760})  # a phone
        ann = await open_app(await browser.new_context(viewport={"width": 1000, "height": 720}), proxy.url, errors)
        bob = await open_app(bobs, base_url, errors)
        await sign_up(ann, "Ann", "ann@example.com", "+1 415 555 0100")
        await sign_up(bob, "Bob", "bob@example.com", "+1 415 555 0199")

        # Ann finds Bob by his exact email and writes; Bob finds her by name, sees one unread.
        await ann.get_by_label("Find people").fill("bob@example.com")
        await ann.get_by_label("Find people").press("Enter")  # the keyboard is enough
        await ann.locator("#results").get_by_role("button", name="Bob").click()
        await expect(ann.locator("#peer-name")).to_have_text("Bob")
        await send(ann, "Hi Bob")
        await expect(ann.locator(".msg.mine")).to_have_attribute("data-status", re.compile("^(sent|delivered)$"))
        for query in ("+14155550100", "ann"):  # her exact phone number, a part of her name
            await bob.get_by_label("Find people").fill(query)
            await bob.get_by_role("button", name="Search").click()
            await expect(bob.locator("#results .name")).to_have_text(["Ann"])
            await bob.locator("#results").evaluate("(list) => list.replaceChildren()")
        await expect(bob.locator("#conversations .badge")).to_have_text("1")
        await bob.locator("#conversations").get_by_role("button", name="Ann").click()
        await expect(bob.locator(".msg.theirs .text")).to_have_text(["Hi Bob"])
        await expect(bob.locator("#conversations .badge")).to_have_count(0)
        await expect(ann.locator(".msg.mine")).to_have_attribute("data-status", "read")

        # Bob answers: now they are contacts, and see each other online and typing.
        await send(bob, "Hi Ann")
        await expect(ann.locator(".msg.theirs .text")).to_have_text(["Hi Ann"])
        await expect(ann.locator("#peer-presence")).to_have_text("online")
        await expect(bob.locator("#peer-presence")).to_have_text("online")
        await ann.get_by_label("Message", exact=True).press_sequentially("How are")
        await expect(bob.locator("#typing")).to_have_text("Ann is typing…")
        await ann.get_by_label("Message", exact=True).press_sequentially(" you?")
        await ann.get_by_label("Message", exact=True).press("Enter")
        await expect(bob.locator("#typing")).to_have_text("")
        await expect(bob.locator(".msg.theirs .text")).to_have_text(["Hi Bob", "How are you?"])

        # Ann's network goes: Bob sees her last seen, and writes three messages meanwhile.
        proxy.cut()
        await until(proxy.refusal)  # her SDK is trying to reconnect, and cannot
        await expect(ann.locator("#connection")).to_have_attribute("data-state", re.compile("^(offline|connecting)$"))
        await expect(bob.locator("#peer-presence")).to_contain_text("last seen")
        for text in ["one", "two", "three"]:
            await send(bob, text)
        await expect(bob.locator('.msg.mine[data-status="sent"] .text')).to_have_text(["one", "two", "three"])

        # It comes back: the three arrive once, in order, and both sides see read ticks.
        await ann.evaluate("window.before = true")  # the same page reconnects: no reload
        proxy.restore()
        await expect(ann.locator("#connection")).to_have_attribute("data-readies", "2")
        await expect(ann.locator("#connection")).to_have_attribute("data-reconnects", "1")
        assert await ann.evaluate("window.before") is True
        await expect(ann.locator(".msg.theirs .text")).to_have_text(["Hi Ann", "one", "two", "three"])
        await expect(bob.locator('.msg.mine[data-status="read"]')).to_have_count(4)
        await expect(ann.locator('.msg.mine[data-status="read"]')).to_have_count(2)
        await expect(bob.locator("#peer-presence")).to_have_text("online")
        shots = [tmp_path / "ann.png", tmp_path / "bob.png"]
        await ann.screenshot(path=shots[0])
        await bob.screenshot(path=shots[1])
        print(f"screenshots: {shots[0]} {shots[1]}")

        # Offline again, Ann writes, reloads: the message is still pending, then sent once.
        proxy.cut()
        await until(proxy.refusal)
        await send(ann, "written offline")
        pending = ann.locator('.msg[data-status="pending"] .text')
        await expect(pending).to_have_text(["written offline"])
        await asyncio.wait_for(ann.evaluate(SAVED_OUTBOX, "written offline"), WAIT_MS / 1000)  # saved, not only shown
        await ann.reload()
        await expect(ann.locator("body")).to_have_attribute("data-started", "true")
        await expect(pending).to_have_text(["written offline"])
        shots.append(tmp_path / "ann-pending-after-reload.png")
        await ann.screenshot(path=shots[-1])
        proxy.refusal.clear()
        await until(proxy.refusal)  # the reloaded page tried, and could not
        proxy.restore()
        await expect(pending).to_have_count(0)
        await expect(ann.locator('.msg.mine .text:text-is("written offline")')).to_have_count(1)
        await expect(bob.locator(".msg.theirs .text")).to_have_text(["Hi Bob", "How are you?", "written offline"])
        ann_id = await ann.evaluate("chat.user.id")
        stored = await bob.evaluate(
            "async (peer) => (await chat.history(peer, {limit: 100})).items.map((m) => m.message)", ann_id
        )
        assert stored.count("written offline") == 1, stored
        shots.append(tmp_path / "ann-sent-after-reload.png")
        await ann.screenshot(path=shots[-1])
        print(f"screenshots: {shots[2]} {shots[3]}")

        # Bob in a new tab: still signed in (the SDK restored him), the conversation reopened by
        # its address, history three at a time going back to the first message.
        again = await open_app(bobs, base_url, errors, f"&pageSize=3#{ann_id}")
        await expect(again.locator("#peer-name")).to_have_text("Ann")
        everything = ["Hi Bob", "Hi Ann", "How are you?", "one", "two", "three", "written offline"]
        await expect(again.locator(".msg .text")).to_have_text(everything[-3:])
        for shown in (6, 7):
            await again.get_by_role("button", name="Load older messages").click()
            await expect(again.locator(".msg .text")).to_have_text(everything[-shown:])
        await expect(again.get_by_role("button", name="Load older messages")).to_be_hidden()

        # Signing out forgets the session; signing in brings the conversation list back.
        await again.get_by_role("button", name="Sign out").click()
        form = again.locator("#sign-in")
        await expect(form).to_be_visible()
        await form.get_by_label("Email").fill("bob@example.com")
        await form.get_by_label("Password").fill(PASSWORD)
        await form.get_by_role("button", name="Sign in").click()
        await expect(again.locator("#connection")).to_have_attribute("data-state", "online")
        await expect(again.locator("#conversations .name")).to_have_text(["Ann"])
        await expect(again.locator("#conversations .preview")).to_have_text(["written offline"])
        assert not errors, errors
        await browser.close()
