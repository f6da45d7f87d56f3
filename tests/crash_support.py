"""Helpers of the crash test (``tests/test_crash.py``): the burst, signed like each platform, and the LLM.

A ``Delivery`` is one webhook call a platform makes for one customer message. Every message carries
a tag (``case`` + four letters, e.g. ``casebcda``) that the fake LLM copies into the reply and into the
one fact Mem0 extracts, so a reply at a fake and a memory in the store name the message they answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from tests.conftest import threadline_cmd

PUBLIC = "https://bot.example.com"
TELEGRAM_SECRET = "crash-test-secret"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzzcrash"
SLACK_TEAM = "T0CRASH01"
SLACK_BOT_USER = "UBOT0001"
TWILIO_SID = "AC" + "c" * 32
TWILIO_TOKEN = "crash-twilio-auth-token"
OUR_NUMBER = "+15558675310"
OUR_EMAIL = "support@threadline.example"
EMAIL_KEY = "key-crash-6f0c1d2b3a4958677a8b9c0d"
AUTHSERV_ID = "mx.threadline.example"
CHANNELS = ("telegram", "slack", "sms", "email")
TAG_RE = re.compile(r"\bcase([a-z]{4})\b")


def tag_of(k: int) -> str:
    letters = ""
    for _ in range(4):
        k, digit = divmod(k, 26)
        letters += chr(ord("a") + digit)
    return f"case{letters}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer:
    index: int
    channel: str

    @property
    def telegram_id(self) -> int:
        return 700_000 + self.index

    @property
    def slack_user(self) -> str:
        return f"UCR{self.index:06d}"

    @property
    def slack_dm(self) -> str:
        return f"DCR{self.index:06d}"

    @property
    def phone(self) -> str:
        return f"+1415555{self.index:04d}"

    @property
    def email(self) -> str:
        return f"customer{self.index}@example.com"

    @property
    def target(self) -> str:
        """Where this customer's replies go, as the fakes record it."""
        return {
            "telegram": str(self.telegram_id),
            "slack": self.slack_dm,
            "sms": self.phone,
            "email": self.email,
        }[self.channel]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One customer message; ``request()`` builds a freshly signed webhook call for it."""

    k: int
    customer: Customer

    @property
    def tag(self) -> str:
        return tag_of(self.k)

    @property
    def text(self) -> str:
        return f"Hello, a question about {self.tag}, my order from last week"

    @property
    def slack_ts(self) -> str:
        return f"1764000000.{self.k:06d}"

    @property
    def email_id(self) -> str:
        return f"<crash-{self.k}@mail.example.com>"

    def request(self, attempt: int) -> tuple[str, bytes, dict[str, str]]:
        """(path, body, headers) as the platform sends it now; ``attempt`` > 0 is a platform retry."""
        return getattr(self, f"_{self.customer.channel}")(attempt)

    def _telegram(self, attempt: int) -> tuple[str, bytes, dict[str, str]]:
        user = self.customer.telegram_id
        update = {
            "update_id": 10_000 + self.k,
            "message": {
                "message_id": 1 + self.k,
                "date": 1_764_000_000,
                "chat": {"id": user, "type": "private", "first_name": "Cust"},
                "from": {"id": user, "is_bot": False, "first_name": "Cust"},
                "text": self.text,
            },
        }
        headers = {"content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET}
        return "/webhooks/telegram", json.dumps(update).encode(), headers

    def _slack(self, attempt: int) -> tuple[str, bytes, dict[str, str]]:
        payload: dict[str, Any] = {
            "token": "one-long-verification-token",
            "team_id": SLACK_TEAM,
            "api_app_id": "A0CRASH01",
            "event": {
                "type": "message",
                "channel": self.customer.slack_dm,
                "user": self.customer.slack_user,
                "text": self.text,
                "ts": self.slack_ts,
                "event_ts": self.slack_ts,
                "channel_type": "im",
            },
            "type": "event_callback",
            "authorizations": [
                {
                    "team_id": SLACK_TEAM,
                    "user_id": SLACK_BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "event_id": f"EvCR{self.k:08d}",
            "event_time": 1_764_000_000,
        }
        body = json.dumps(payload).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(SLACK_SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
        headers = {
            "content-type": "application/json",
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": f"v0={digest.hexdigest()}",
        }
        if attempt:
            headers |= {"x-slack-retry-num": str(attempt), "x-slack-retry-reason": "http_error"}
        return "/webhooks/slack/events", body, headers

    def _sms(self, attempt: int) -> tuple[str, bytes, dict[str, str]]:
        form = {
            "MessageSid": f"SM{self.k:032x}",
            "AccountSid": TWILIO_SID,
            "From": self.customer.phone,
            "To": OUR_NUMBER,
            "Body": self.text,
            "NumMedia": "0",
        }
        path = "/webhooks/twilio/sms"
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + path, form)
        headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}
        return path, urlencode(form).encode(), headers

    @property
    def mime(self) -> str:
        """The customer's email as our MTA hands it on (to the inbound webhook or the SMTP listener)."""
        # the MTA checked DMARC and wrote its verdict above its own trace: an authenticated sender,
        # answered by the agent (a bare From: gets one fixed acknowledgement at most)
        return (
            f"Authentication-Results: {AUTHSERV_ID}; dmarc=pass header.from=example.com\r\n"
            "Received: from mail.example.com ([198.51.100.7]) by mx.threadline.example; 1 Dec 2026\r\n"
            f"From: {self.customer.email}\r\nTo: Threadline Support <{OUR_EMAIL}>\r\n"
            f"Subject: Order question\r\nDate: Mon, 3 Mar 2025 09:30:51 -0800\r\n"
            f"Message-ID: {self.email_id}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{self.text}\r\n"
        )

    def _email(self, attempt: int) -> tuple[str, bytes, dict[str, str]]:
        mime = self.mime
        stamp = str(int(time.time()))
        token = secrets.token_hex(25)  # a fresh token on every attempt, as Mailgun signs each POST
        signature = hmac.new(EMAIL_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        fields = {
            "timestamp": stamp,
            "token": token,
            "signature": signature,
            "recipient": OUR_EMAIL,
            "sender": self.customer.email,
            "body-mime": mime,
        }
        boundary = secrets.token_hex(16)
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        body = ("".join(parts) + f"--{boundary}--\r\n").encode()
        return "/webhooks/email/inbound", body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def burst(*, deliveries: int, customers: int, duplicate_share: float, seed: int = 6) -> list[Delivery]:
    """``deliveries`` webhook calls: unique messages over ``customers`` (channels round robin), with
    ``duplicate_share`` of them re-sends of an earlier message (same provider id), shuffled in."""
    rng = random.Random(seed)
    people = [Customer(index=i, channel=CHANNELS[i % len(CHANNELS)]) for i in range(customers)]
    duplicates = round(deliveries * duplicate_share)
    unique = [Delivery(k=k, customer=rng.choice(people)) for k in range(deliveries - duplicates)]
    calls = list(unique)
    for _ in range(duplicates):
        original = rng.randrange(len(unique))
        # a platform's duplicate comes a little after the original
        calls.insert(min(len(calls), calls.index(unique[original]) + rng.randint(1, 40)), unique[original])
    return calls


def model(request: dict[str, Any]) -> str:
    """The fake LLM: a chat reply names the tag of the customer's latest message; Mem0's extraction
    (a JSON request) returns one fact naming the tag of the new messages."""
    messages = request.get("messages") or []
    if (request.get("response_format") or {}).get("type") == "json_object":
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        new = prompt.split("## New Messages", 1)[-1].split("## Observation Date", 1)[0]
        found = TAG_RE.search(new)
        facts = [{"text": f"The customer asked about {found.group(0)}"}] if found else []
        return json.dumps({"memory": facts})
    last = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    found = TAG_RE.search(last)
    return f"Thanks, we are looking into {found.group(0) if found else 'your question'}."


# ----- what the fakes received (used by ``tests/test_crash_scale.py``) ------------------------------


@dataclass(frozen=True, slots=True)
class SentReply:
    """One reply as a fake platform recorded it, in the order the fakes received them."""

    channel: str
    target: str  # as ``Customer.target`` names it
    tag: str | None
    thread: str | None  # Slack thread_ts / email In-Reply-To


def replies_at(telegram: Any, slack: Any, twilio: Any, relay: Any) -> list[SentReply]:
    """Every reply the four fakes (Telegram, Slack, Twilio, SMTP relay) took, in arrival order per fake."""

    def tag(text: str) -> str | None:
        found = TAG_RE.search(text)
        return found.group(0) if found else None

    out = [SentReply("telegram", str(m["chat"]["id"]), tag(m["text"]), None) for m in list(telegram.sent)]
    out += [SentReply("slack", m.channel, tag(m.text), m.thread_ts) for m in list(slack.posted)]
    out += [SentReply("sms", m["To"], tag(m["Body"]), None) for m in list(twilio.messages)]
    for relayed in list(relay.messages):
        part = relayed.message.get_body(preferencelist=("plain",))
        text = str(part.get_content()) if part is not None else ""
        out.append(SentReply("email", ",".join(relayed.rcpt_tos), tag(text), relayed.message["In-Reply-To"]))
    return out


# ----- the server under test ----------------------------------------------------------------------

READY_TIMEOUT = 180.0  # seconds a started ``serve`` may take to answer /readyz (a loaded CI machine)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``threadline serve ARGS`` as a subprocess, started again on the same data dir and port; its output
    (of every start) in ``log``."""

    def __init__(self, log: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.args = args
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    async def start(self) -> None:
        """Start it and wait until it answers /readyz (fails with the end of its log if it does not)."""
        with self.log.open("ab") as log:
            log.write(f"\n===== start {self.starts + 1} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                threadline_cmd("serve", *self.args, "--port", str(self.port)),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert self.proc.poll() is None, f"serve exited: {self.tail()}"
                assert time.monotonic() < deadline, f"serve not ready: {self.tail()}"
                await asyncio.sleep(0.1)

    def kill(self) -> int | None:
        """SIGKILL: no shutdown hook, no flush, no lease released; whatever was in flight is cut. The pid
        killed (None when it was not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.kills += 1
        return self.proc.pid

    async def reap(self) -> None:
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait, 30)
            self.proc = None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        await self.reap()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
