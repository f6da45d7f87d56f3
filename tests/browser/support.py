"""What the browser tests and ``scripts/screenshots.py`` share: the chromium to drive, the app with its
fake platforms (``Desk``: a customer writes on Telegram or by SMS, the store is looked at), operator
accounts, and signing in through the console's form.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from twilio.request_validator import RequestValidator

from core.settings import HandoffSettings
from core.store.models import Identity, InboxRow
from core.store.operators import Operators
from tests.apphost import Served, app_settings, serving
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import telegram_settings, twilio_settings

# read at import: the tests' autouse ``_clean_env`` fixture removes every THREADLINE_* variable
CHROMIUM_SETTING = "THREADLINE_CHROMIUM"
_CONFIGURED_CHROMIUM = os.environ.get(CHROMIUM_SETTING, "").strip()
DEBIAN_CHROMIUM = "/usr/bin/chromium"
# root in a container has no user namespace for chromium's sandbox; /dev/shm is often tiny there
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]

ADMIN, ADMIN_PASSWORD = "maria", "correct horse battery staple"
AGENT, AGENT_PASSWORD = "tomas", "agent password 12345"
PUBLIC = "https://bot.example.com"
TELEGRAM_SECRET = "browser-telegram-secret"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "browser-twilio-auth-token"
OUR_NUMBER = "+15558675310"
BOT_ID = DEFAULT_TOKEN.split(":", 1)[0]
TIMEOUT_MS = 15_000  # one step of a test: a click, a page load, a live update


def find_chromium() -> tuple[str | None, str]:
    """The chromium to drive (``THREADLINE_CHROMIUM``, else Debian's) and, when there is none, why."""
    if _CONFIGURED_CHROMIUM:
        if os.path.isfile(_CONFIGURED_CHROMIUM) and os.access(_CONFIGURED_CHROMIUM, os.X_OK):
            return _CONFIGURED_CHROMIUM, ""
        return None, f"{CHROMIUM_SETTING}={_CONFIGURED_CHROMIUM} is not an executable file"
    for candidate in (DEBIAN_CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate, ""
    return None, (
        f"no chromium at {DEBIAN_CHROMIUM} (scripts/test.sh installs Debian's `chromium` package; "
        f"or set {CHROMIUM_SETTING} to a chromium binary)"
    )


async def new_page(browser: Any, *, width: int = 1280, height: int = 800, **options: Any) -> Any:
    """A page in a fresh context (its own cookies), ``width`` x ``height``, with short timeouts."""
    context = await browser.new_context(viewport={"width": width, "height": height}, **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return await context.new_page()


def bot_reply(request: dict[str, Any]) -> str:
    """The fake LLM: no memories to extract; a chat answer that names the message it answers."""
    if (request.get("response_format") or {}).get("type") == "json_object":
        return json.dumps({"memory": []})
    users = [m for m in request.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    last = str(users[-1].get("content", "")) if users else ""
    last = re.sub(r"^\[via \w+\]\s*", "", last)  # the hub says which channel the message came on
    return f"Bot answer to: {last[-80:]}"


@dataclass
class Desk:
    """The served app with its fakes: what a customer does, and what a test looks at in the store."""

    served: Served
    telegram: FakeTelegramAPI
    twilio: FakeTwilioAPI
    llm: FakeOpenAI
    _update_ids: Iterator[int] = field(default_factory=lambda: iter(range(9000, 10**6)))

    @property
    def url(self) -> str:
        return self.served.url

    # ----- a customer writes ---------------------------------------------------------------------

    async def telegram_message(self, user: int, text: str, *, name: str = "Ana") -> str:
        """A private Telegram text from ``user``; returns its inbox key (provider message id)."""
        update_id = next(self._update_ids)
        message = self._telegram_message(update_id, user, name) | {"text": text}
        await self._post_telegram(update_id, message)
        return f"{BOT_ID}:{update_id}"

    async def telegram_contact(self, user: int, phone: str, *, name: str = "Ana") -> str:
        """``user`` shares their own contact (``phone`` as Telegram sends it, without the ``+``)."""
        update_id = next(self._update_ids)
        contact = {"phone_number": phone, "first_name": name, "user_id": user}
        message = self._telegram_message(update_id, user, name) | {"contact": contact}
        await self._post_telegram(update_id, message)
        return f"{BOT_ID}:{update_id}"

    @staticmethod
    def _telegram_message(update_id: int, user: int, name: str) -> dict[str, Any]:
        return {
            "message_id": update_id,
            "date": int(time.time()),  # the hub keeps the platform's time: the overview counts by it
            "chat": {"id": user, "type": "private", "first_name": name},
            "from": {"id": user, "is_bot": False, "first_name": name},
        }

    async def _post_telegram(self, update_id: int, message: dict[str, Any]) -> None:
        response = await self.served.client.post(
            "/webhooks/telegram",
            content=json.dumps({"update_id": update_id, "message": message}),
            headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET},
        )
        assert response.status_code == 200, response.text

    async def sms(self, phone: str, text: str) -> str:
        """An SMS from ``phone`` (E.164), signed as Twilio signs it; returns its inbox key (the SID)."""
        sid = "SM" + secrets.token_hex(16)
        form = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": phone, "To": OUR_NUMBER}
        form |= {"Body": text, "NumMedia": "0"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC}/webhooks/twilio/sms", form)
        response = await self.served.client.post(
            "/webhooks/twilio/sms",
            content=urlencode(form),
            headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
        )
        assert response.status_code == 200, response.text
        return sid

    # ----- the store -------------------------------------------------------------------------------

    async def handled(self, channel: str, key: str, *, timeout: float = 30.0) -> InboxRow:
        """Wait until the worker has finished the inbox row ``(channel, key)`` and nothing is left to send
        (a reply it made has reached the fake platform); returns the row."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            async with self.served.hub.db.session() as session:
                row = await session.scalar(
                    select(InboxRow).where(InboxRow.channel == channel, InboxRow.provider_message_id == key)
                )
            if row is not None and row.status not in ("pending", "throttled"):
                break
            if loop.time() > deadline:
                raise AssertionError(f"inbox row {channel} {key} not handled within {timeout} s")
            await asyncio.sleep(0.05)
        left = await self.served.hub.wait_idle(timeout=max(1.0, deadline - loop.time()))
        assert not left["inbox"] and not left["outbox"], f"the hub is still busy: {left}"
        return row

    async def customer_of(self, address: str) -> str:
        """The id of the customer that holds ``address`` now."""
        async with self.served.hub.db.session() as session:
            customer = await session.scalar(select(Identity.customer_id).where(Identity.address == address))
        assert customer is not None, f"no customer holds {address}"
        return str(customer)

    def telegram_texts(self, chat: int) -> list[str]:
        """What reached the Telegram chat ``chat`` (from the bot or an operator), in order."""
        return [str(m.get("text", "")) for m in self.telegram.sent if int(m["chat"]["id"]) == chat]


async def add_operator(served: Served, name: str, role: str, password: str) -> None:
    """An operator account, made as ``threadline operators add NAME --role ROLE`` makes it."""
    await Operators(served.hub.db).add(name, role, password)


@asynccontextmanager
async def running_desk(data_dir: Path, *, operators: bool = True) -> AsyncIterator[Desk]:
    """The app (Telegram and SMS at their fakes, the LLM at the fake model, the team always online) with
    an admin (``maria``) and an agent (``tomas``), until the block ends."""
    async with (
        FakeTelegramAPI() as telegram,
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeOpenAI(responder=bot_reply) as llm,
    ):
        settings = app_settings(
            data_dir,
            llm_url=llm.base_url,
            public_base_url=PUBLIC,
            telegram=telegram_settings(telegram, secret=TELEGRAM_SECRET),
            twilio=twilio_settings(
                twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
            ),
            handoff=HandoffSettings(working_hours=""),
        )
        async with serving(settings) as served:
            if operators:
                await add_operator(served, ADMIN, "admin", ADMIN_PASSWORD)
                await add_operator(served, AGENT, "agent", AGENT_PASSWORD)
            yield Desk(served=served, telegram=telegram, twilio=twilio, llm=llm)


async def sign_in(page: Any, desk: Desk, name: str, password: str) -> None:
    """Sign in through the console's form; the inbox is shown."""
    await page.goto(f"{desk.url}/console/login")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{desk.url}/console/")
