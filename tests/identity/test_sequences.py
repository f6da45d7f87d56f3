"""Random link / unlink / merge / undo sequences through the admin API: every LLM call sees only its customer.

Each seed serves the real app (signed SMS and Telegram webhooks over HTTP, the admin API with its bearer
token, Mem0's local backend, the fake LLM over HTTP) with five handles, two SMS phones and three Telegram
users. Every message a handle sends carries that handle's marker word (and a message number). The fake LLM
restates what it is shown (``restating_model``): a reply quotes its whole prompt (recalled memories, recent
conversation), and fact extraction turns the new messages and every line of context it was shown (earlier
messages, existing memories) into memories. So whatever reaches a prompt travels on, and a marker found
where it should not be shows exactly which words went where.

Every seed opens with chained merges (A into B, then B into C), an undo of the first (refused, naming the
second) and a handle moved (unlinked, linked away, or its merge undone) while its memory write is held in
flight at the fake LLM: the write lands with the customer the handle left and must follow it
(``core.memory.writer``'s ``_follow``). Then ``STEPS`` random steps: messages, links to another customer,
unlinks, merges (often of the last merge's target: more chains), undos in random order (refused whenever a
later merge must go first), and more moves during a memory write. About 22 identity changes and messages
per seed.

The rule, checked for EVERY request the fake LLM received, replies and extractions alike:

    A request is made for one message (its number is in the request: the message answered, or the new
    message of the memory write) and so for the customer C that held the message's handle when the
    request reached the LLM (the model below follows every identity change). The request may contain the
    marker of a handle h only if h belonged to C at that moment.

That is stronger than "no words of another customer": words said by a handle while it belonged to C, by C's
other handles, or by the bot for C while they were together, must not reach C's requests once that handle
has left C, nor reach the handle's requests once it has left C (the words of a handle that left must not
come back through replies that quoted it, through memories made while it was there, or through Mem0's
context), and they may come back when the handle comes back. After every step, every customer's
conversation log and memories hold only markers of its own handles, and the identities are what the model
says (the ledger replays). At the end, every handle's reply (a restated recall) holds only markers of its
customer's handles, and forgetting one customer leaves its handles' markers in no table and no file.

The seed is in the test id and in every assertion message.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.store.models import Identity, MemoryMove, Turn
from identity.ledger import current_state, ledger, replay
from tests.apphost import Served, app_settings, serving
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import post_telegram_message, post_twilio_sms, telegram_settings, twilio_settings
from tests.scan import files_holding, tables_holding

SEEDS = range(10)
STEPS = 15  # random identity changes and messages, after the opening (chained merges, a move mid-write)

PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "9" * 32
AUTH_TOKEN = "sequences-auth-token"
OUR_NUMBER = "+15558675310"
TG_SECRET = "sequences-secret"
ADMIN_TOKEN = "admin-token-sequences"
HANDLES = ("sms:+15551230001", "sms:+15551230002", "telegram:701", "telegram:702", "telegram:703")
MARKERS = dict(zip(HANDLES, ("zqamber", "zqbirch", "zqcedar", "zqdahlia", "zqember"), strict=True))
NUMBER = re.compile(r"msg(\d+)x")
HOLD = 0.5  # seconds the fake LLM holds a memory write while a handle is moved


# ----- the fake model ----------------------------------------------------------------------------------


def _sections(prompt: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", prompt, flags=re.MULTILINE)
    return {title.strip(): body.strip() for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def _spoken(line: str) -> str:
    return re.sub(r"^(user|assistant):\s*", "", line.strip())


def _known(text: str) -> str:
    return "Also known: " + text.removeprefix("Also known: ")


def restating_model(request: dict[str, Any]) -> str:
    """Restates what it is shown, as ``tests.fakes.openai_server.restating_responder`` does, compactly.

    Extraction (Mem0's JSON request): each new message is a fact, each earlier message it was shown
    becomes "Also said: ...", each existing memory "Also known: ..." (the same text for the same memory, so
    Mem0's own duplicate check keeps the count down). A chat request is answered with everything it was
    shown after the fixed instructions: the recalled-memory block and the conversation.
    """
    messages = [m for m in request.get("messages", []) if isinstance(m, dict)]
    if (request.get("response_format") or {}).get("type") == "json_object":
        sections = _sections(str(messages[-1].get("content", "")))
        facts = [_spoken(line) for line in sections.get("New Messages", "").splitlines() if line.strip()]
        said = sections.get("Last k Messages", "")
        facts += ["Also said: " + _spoken(line) for line in said.splitlines() if line.strip()]
        try:
            existing = json.loads(sections.get("Existing Memories") or "[]")
        except json.JSONDecodeError:
            existing = []
        facts += [_known(str(m.get("text", ""))) for m in existing if isinstance(m, dict) and m.get("text")]
        return json.dumps({"memory": [{"text": fact} for fact in dict.fromkeys(facts) if fact]})
    return "I see: " + " | ".join(str(m.get("content", "")).replace("\n", " | ") for m in messages[1:])


def request_number(request: dict[str, Any]) -> int | None:
    """The message a request was made for: the last user message of a reply, the first new message of a
    memory write."""
    messages = [m for m in request.get("messages", []) if isinstance(m, dict)]
    if (request.get("response_format") or {}).get("type") == "json_object":
        text = _sections(str(messages[-1].get("content", ""))).get("New Messages", "")
    else:
        text = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    found = NUMBER.search(text)
    return int(found.group(1)) if found else None


def markers_in(text: str) -> set[str]:
    return {handle for handle, marker in MARKERS.items() if marker in text}


# ----- the model of who holds what ---------------------------------------------------------------------


@dataclass
class Merge:
    id: int
    source: str
    target: str
    addresses: tuple[str, ...]
    undone: bool = False


@dataclass
class Model:
    """Which customer holds each handle, and the merges: what the admin API must do, worked out alone."""

    owner: dict[str, str] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)
    merges: list[Merge] = field(default_factory=list)

    def customers(self) -> set[str]:
        return set(self.owner.values())

    def handles_of(self, customer: str) -> set[str]:
        return {h for h, c in self.owner.items() if c == customer}

    def live(self, customer: str) -> bool:
        return customer not in self.merged_into

    def first_handles(self) -> list[str]:
        """One handle of each customer holding any (its first in ``HANDLES`` order): choices go through
        handles, never through customer ids (random), so that a seed always plays the same sequence."""
        seen: dict[str, str] = {}
        for handle in HANDLES:
            seen.setdefault(self.owner[handle], handle)
        return list(seen.values())


@dataclass
class Epoch:
    first_call: int
    owner: dict[str, str]


@dataclass
class Run:
    seed: int
    served: Served
    llm: FakeOpenAI
    twilio: FakeTwilioAPI
    telegram: FakeTelegramAPI
    data_dir: Path
    rng: random.Random
    model: Model = field(default_factory=Model)
    epochs: list[Epoch] = field(default_factory=list)
    sender: dict[int, str] = field(default_factory=dict)  # message number -> handle
    log: list[str] = field(default_factory=list)
    next_update: int = 1000

    def where(self) -> str:
        return f"seed {self.seed}, after: {'; '.join(self.log[-6:])}"

    # ----- talking -------------------------------------------------------------------------------

    async def post(self, handle: str, text: str) -> None:
        channel, _, user = handle.partition(":")
        if channel == "sms":
            await post_twilio_sms(
                self.served.client,
                public=PUBLIC,
                account_sid=ACCOUNT_SID,
                auth_token=AUTH_TOKEN,
                to=OUR_NUMBER,
                phone=user,
                text=text,
            )
            return
        self.next_update += 1
        chat = {"id": int(user), "type": "private", "first_name": "T"}
        message = {
            "message_id": self.next_update,
            "date": 1_764_000_000,
            "chat": chat,
            "from": {"id": int(user), "is_bot": False, "first_name": "T"},
            "text": text,
        }
        await post_telegram_message(
            self.served.client, secret=TG_SECRET, update_id=self.next_update, message=message
        )

    async def say(self, handle: str, *, wait: bool = True) -> int:
        number = len(self.sender) + 1
        self.sender[number] = handle
        self.log.append(f"{handle} says msg{number}x")
        await self.post(handle, f"{MARKERS[handle]} here, msg{number}x")
        if wait:
            await self.settle()
        return number

    async def settle(self) -> None:
        """Idle: no message, reply or memory write waiting, and no memory move queued."""
        hub = self.served.hub
        for _ in range(3):  # a memory write that followed its handle queues one more move
            assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}, self.where()
            await self.served.app.state.admin.links.run_moves()
            async with hub.db.session() as session:
                queued = list(
                    await session.scalars(
                        select(MemoryMove.id).where(MemoryMove.status.in_(("pending", "running")))
                    )
                )
            if not queued and not any((await hub.backlog()).values()):
                return
        raise AssertionError(f"memory moves still queued: {self.where()}")

    def sent_to(self, handle: str) -> list[str]:
        """Every message part the platforms delivered to ``handle``."""
        channel, _, user = handle.partition(":")
        if channel == "sms":
            return [m["Body"] for m in self.twilio.messages if m["To"] == user]
        return [m["text"] for m in self.telegram.sent if m["chat"]["id"] == int(user)]

    # ----- the admin API -------------------------------------------------------------------------

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        response = await self.served.client.request(
            method, path, json=body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        return response.status_code, response.json()

    def epoch(self) -> None:
        self.epochs.append(Epoch(first_call=len(self.llm.calls), owner=dict(self.model.owner)))

    async def customer_of(self, handle: str) -> str:
        status, body = await self.admin("GET", f"/admin/customers/{handle}")
        assert status == 200, (body, self.where())
        found: str = body["id"]
        return found

    async def link(self, handle: str, to_handle: str) -> None:
        target = self.model.owner[to_handle]
        self.log.append(f"link {handle} to the customer of {to_handle}")
        status, body = await self.admin(
            "POST", "/admin/identities/link", {"address": handle, "customer_id": to_handle}
        )
        assert status == 200 and body["customer_id"] == target, (body, self.where())
        self.model.owner[handle] = target
        self.epoch()

    async def unlink(self, handle: str) -> None:
        self.log.append(f"unlink {handle}")
        status, body = await self.admin("POST", "/admin/identities/unlink", {"address": handle})
        assert status == 200 and body["customer_id"] not in self.model.customers(), (body, self.where())
        self.model.owner[handle] = body["customer_id"]
        self.epoch()

    async def merge(self, source_handle: str, target_handle: str) -> None:
        source, target = self.model.owner[source_handle], self.model.owner[target_handle]
        self.log.append(f"merge the customer of {source_handle} into that of {target_handle}")
        status, body = await self.admin(
            "POST", "/admin/customers/merge", {"source": source_handle, "target": target_handle}
        )
        moved = tuple(sorted(self.model.handles_of(source)))
        assert status == 200 and sorted(body["addresses"]) == list(moved), (body, self.where())
        self.model.merges.append(Merge(body["merge_id"], source, target, moved))
        self.model.merged_into[source] = target
        for handle in moved:
            self.model.owner[handle] = target
        self.epoch()

    async def undo(self, merge: Merge) -> None:
        self.log.append(f"undo merge {merge.id}")
        status, body = await self.admin("POST", f"/admin/merges/{merge.id}/undo", {})
        later = next(
            (m for m in self.model.merges if not m.undone and m.source == merge.target),
            None,
        )
        if merge.undone:
            assert status == 409 and "already undone" in body["detail"], (body, self.where())
            return
        if later is not None:  # the target went on into another customer: that merge first
            assert status == 409 and f"undo merge {later.id} first" in body["detail"], (body, self.where())
            return
        back = sorted(h for h in merge.addresses if self.model.owner[h] == merge.target)
        assert status == 200 and sorted(body["addresses"]) == back, (body, self.where())
        merge.undone = True
        del self.model.merged_into[merge.source]
        for handle in back:
            self.model.owner[handle] = merge.source
        self.epoch()

    # ----- checks --------------------------------------------------------------------------------

    async def check_identities(self) -> None:
        async with self.served.hub.db.session() as session:
            held = {row.address: row.customer_id for row in await session.scalars(select(Identity))}
            assert replay(await ledger(session)) == await current_state(session), self.where()
        assert held == self.model.owner, self.where()

    def check_calls(self) -> None:
        """The rule of the module docstring, for every request the fake LLM received."""
        calls = self.llm.calls
        bounds = [epoch.first_call for epoch in self.epochs[1:]] + [len(calls)]
        wrong = []
        for epoch, end in zip(self.epochs, bounds, strict=True):
            for index in range(epoch.first_call, end):
                call = calls[index]
                number = request_number(call)
                assert number is not None and number in self.sender, (index, self.where())
                handle = self.sender[number]
                customer = epoch.owner[handle]
                allowed = {h for h, c in epoch.owner.items() if c == customer}
                extra = markers_in(json.dumps(call)) - allowed
                if extra:
                    kind = "memory write" if call.get("response_format") else "reply"
                    wrong.append(f"call {index} ({kind} for msg{number}x of {handle}): {sorted(extra)}")
        assert not wrong, f"{self.where()}\n" + "\n".join(wrong)

    async def check_stores(self) -> None:
        """Every customer's conversation log and memories hold only its own handles' markers (after every
        step: a memory written while its handle moved must have followed it by then)."""
        hub = self.served.hub
        for customer in self.model.customers():
            allowed = self.model.handles_of(customer)
            async with hub.db.session() as session:
                turns = list(await session.scalars(select(Turn.text).where(Turn.customer_id == customer)))
            memories = [m.text for m in await hub.memory.list(customer)]
            for where, texts in (("conversation", turns), ("memories", memories)):
                extra = set().union(*(markers_in(t) for t in texts)) - allowed
                assert not extra, (
                    f"{where} of {customer} ({sorted(allowed)}): {sorted(extra)}; {self.where()}"
                )


# ----- the sequence ------------------------------------------------------------------------------------


async def moved_while_writing(run: Run, handle: str) -> bool:
    """``handle`` speaks; while its memory write is held at the fake LLM, it is moved away (unlink, a link
    to another customer, or the undo of the merge that brought it). False when no move applies."""
    model = run.model
    own = model.owner[handle]
    moves: list[tuple[str, Any]] = []
    if len(model.handles_of(own)) > 1:
        moves.append(("unlink", None))
    others = [h for h in HANDLES if model.owner[h] != own and model.live(model.owner[h])]
    if others and len(model.handles_of(own)) > 1:
        moves.append(("link", run.rng.choice(others)))
    undoable = [
        m
        for m in model.merges
        if not m.undone
        and m.target == own
        and handle in m.addresses
        and not any(x.source == own and not x.undone for x in model.merges)
    ]
    if undoable:
        moves.append(("undo", run.rng.choice(undoable)))
    if not moves:
        return False
    kind, arg = run.rng.choice(moves)
    number = await run.say(handle, wait=False)

    async def arrived(memory_write: bool) -> None:
        for _ in range(1000):
            for call in run.llm.calls:
                if bool(call.get("response_format")) == memory_write and request_number(call) == number:
                    return
            await asyncio.sleep(0.01)
        backlog = await run.served.hub.backlog()
        kind = "memory write" if memory_write else "reply"
        raise AssertionError(f"no {kind} request for msg{number}x (backlog {backlog}): {run.where()}")

    await arrived(memory_write=False)  # the reply is on its way: hold the memory write that follows
    run.llm.delay = HOLD
    await arrived(memory_write=True)
    run.llm.delay = 0.0
    run.log.append(f"(during the memory write of msg{number}x)")
    if kind == "unlink":
        await run.unlink(handle)
    elif kind == "link":
        await run.link(handle, arg)
    else:
        await run.undo(arg)
    await run.settle()
    return True


async def opening(run: Run) -> None:
    """Every seed starts with chained merges (A into B, then B into C), the first undone out of order
    (refused, naming the second), and a handle moved while its memory write is in flight."""
    rng, model = run.rng, run.model
    a, b, c = rng.sample(HANDLES, 3)
    await run.merge(a, b)
    first = model.merges[-1]
    await run.merge(b, c)
    await run.undo(first)
    assert not first.undone, run.where()  # refused
    await run.settle()
    await run.check_identities()
    assert await moved_while_writing(run, rng.choice(sorted(model.handles_of(model.owner[c])))), run.where()
    await run.check_identities()
    await run.check_stores()


async def step(run: Run) -> None:
    rng, model = run.rng, run.model
    firsts = model.first_handles()  # one handle of each customer holding any (all live)
    live = [model.owner[h] for h in firsts]
    roll = rng.random()
    if roll < 0.35:
        await run.say(rng.choice(HANDLES))
    elif roll < 0.45 and await moved_while_writing(run, rng.choice(HANDLES)):
        pass
    elif roll < 0.6 and len(live) > 1:
        handle = rng.choice(HANDLES)
        others = [h for h in HANDLES if model.owner[h] != model.owner[handle]]
        await run.link(handle, rng.choice(others))
    elif roll < 0.7:
        shared = [h for h in HANDLES if len(model.handles_of(model.owner[h])) > 1]
        if shared:
            await run.unlink(rng.choice(shared))
    elif roll < 0.85 and len(live) > 1:
        last = model.merges[-1].target if model.merges else None
        if last in live and rng.random() < 0.5:  # chain: the last target goes on
            source = next(h for h in HANDLES if model.owner[h] == last)
            target = rng.choice([h for h in HANDLES if model.owner[h] != last])
        else:
            source, target = rng.sample(firsts, 2)
        await run.merge(source, target)
    elif model.merges:
        pending = [m for m in model.merges if not m.undone]
        await run.undo(rng.choice(pending or model.merges))
    await run.settle()
    await run.check_identities()
    await run.check_stores()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Served, FakeOpenAI, FakeTwilioAPI, FakeTelegramAPI]]:
    with FakeOpenAI(responder=restating_model) as llm:
        async with (
            FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
            FakeTelegramAPI() as telegram,
        ):
            settings = app_settings(
                tmp_path / "data",
                llm_url=llm.base_url,
                public_base_url=PUBLIC,
                admin_token=SecretStr(ADMIN_TOKEN),
                twilio=twilio_settings(
                    twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
                ),
                telegram=telegram_settings(telegram, secret=TG_SECRET),
            )
            async with serving(settings) as app:
                yield app, llm, twilio, telegram


@pytest.mark.parametrize("seed", SEEDS)
async def test_every_llm_call_sees_only_the_handles_of_its_customer(
    seed: int,
    served: tuple[Served, FakeOpenAI, FakeTwilioAPI, FakeTelegramAPI],
    tmp_path: Path,
) -> None:
    app, llm, twilio, telegram = served
    run = Run(seed, app, llm, twilio, telegram, tmp_path / "data", random.Random(seed))
    for handle in HANDLES:  # everyone speaks once: a customer each
        await run.say(handle)
        run.model.owner[handle] = await run.customer_of(handle)
    run.epochs = [Epoch(first_call=0, owner=dict(run.model.owner))]
    await opening(run)
    for _ in range(STEPS):
        await step(run)
    run.check_calls()
    for handle in HANDLES:  # the end: each handle asks, and the reply restates what it recalled
        before = len(run.sent_to(handle))
        await run.say(handle)
        reply = " ".join(run.sent_to(handle)[before:])
        extra = markers_in(reply) - run.model.handles_of(run.model.owner[handle])
        assert reply and not extra, f"the reply to {handle} holds {sorted(extra)}: {run.where()}"
    run.check_calls()
    await run.check_stores()
    await run.check_identities()

    gone = run.model.owner[run.rng.choice(HANDLES)]  # forget one: its handles' words go everywhere
    status, _ = await run.admin("DELETE", f"/admin/customers/{gone}")
    assert status == 200, run.where()
    for handle in run.model.handles_of(gone):
        assert await tables_holding(app.hub, MARKERS[handle]) == [], (handle, run.where())
        assert files_holding(run.data_dir, MARKERS[handle].encode()) == [], (handle, run.where())
