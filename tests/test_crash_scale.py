"""Crash test in scale mode (issue 13): three processes on one PostgreSQL, ``kill -9`` under a burst.

Three ``threadline serve --role all`` processes (nodes ``a``, ``b``, ``c``: each its own port, data dir
and SMTP listener port) share one fresh PostgreSQL database (``threadline migrate`` first); every channel
points at a local fake (Telegram, Slack, Twilio, an SMTP relay) and the LLM is a fake with a short delay.
Leases last ``LEASE_SECONDS``, so the claims of a killed process lapse quickly and another process takes
its rows over.

The test plays the four platforms and a load balancer in front of the nodes: ``DELIVERIES`` signed calls
over ``CUSTOMERS`` customers (channels round robin; half of the email comes by the inbound webhook, half
by SMTP to a node's listener, as an MTA hands it on), some of them duplicates of an earlier call (same
provider id) sent to another node than the original. Calls go round robin over the live nodes,
``SEND_CONCURRENCY`` at a time; a call that got no 2xx (or 250), or died with its connection, is sent
again to another node, as a platform retries through its balancer. ``kill -9`` hits one node at each of
``BURST_KILLS`` (restarted at once, or after the burst; a node restarted is back before the next kill),
and once more while the backlog drains (``DRAIN_KILL``: never restarted; the other two finish its work).
Around each kill the test notes the rows the process held: its outbox rows are the replies it may have
been sending as it died, and every row it still held after the kill must be taken over.

When the backlog is drained it checks, per unique message:

- exactly one reply at its fake, to the customer who wrote it (its Slack thread / email thread); a second
  reply only where the reply's outbox row was held by a killed process (the platform took the reply, the
  kill came before the hub recorded it; no platform here has idempotency keys), unless
  ``STRICT_EXACTLY_ONCE``. A second reply any other way fails, with what the nodes' logs say of it;
- exactly one memory naming exactly its inbox row, read from the memory index on PostgreSQL;
- its inbox row done, its outbox row sent, its memory job done; one inbox row per provider id;
- per customer, the replies reached the platform in the order of the customer's inbox rows;
- every row a killed process held was finished by another process, under a higher fencing token.

The counts are printed: accepted, replied once, duplicates suppressed, takeovers, lost (0), and the leases
that live processes lost (a renewal too late under load: the row was taken over while its holder ran).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiosmtplib
import asyncpg
import httpx
import pytest

from core.memory import mem0_oss
from core.memory.local import LocalMemory
from core.messages import MemoryRecord
from core.settings import LLMSettings
from tests.conftest import subprocess_env, threadline_cmd
from tests.crash_support import (
    AUTHSERV_ID,
    EMAIL_KEY,
    OUR_EMAIL,
    OUR_NUMBER,
    PUBLIC,
    SLACK_BOT_USER,
    SLACK_SECRET,
    SLACK_TEAM,
    TAG_RE,
    TELEGRAM_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    Delivery,
    ServeProcess,
    burst,
    free_port,
    model,
    replies_at,
)
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI

pytestmark = [pytest.mark.slow, pytest.mark.serial]

NODES = ("a", "b", "c")
DELIVERIES = 1_000  # webhook calls (and SMTP submissions) in the burst, duplicates included
CUSTOMERS = 100  # spread round robin over the four channels
DUPLICATE_SHARE = 0.10  # calls that repeat an earlier provider id, sent to another node
SEND_CONCURRENCY = 16  # calls in flight at once, over all nodes
LLM_DELAY = 0.05  # seconds the fake LLM holds every call (chat and Mem0 extraction)
LEASE_SECONDS = 5.0  # a killed node's claims lapse after this long (renewed every third of it)
Restart = Literal["now", "after_burst"]
# kill -9 node ``NODES[i]`` once this share of the burst's calls was accepted; then restart it ...
BURST_KILLS: tuple[tuple[float, int, Restart], ...] = (
    (0.20, 0, "now"),
    (0.45, 1, "now"),
    (0.70, 2, "after_burst"),
)
# ... and kill node ``NODES[i]`` once this share of the backlog left at the end of the burst was replied
DRAIN_KILL: tuple[float, int] = (0.5, 0)
STRICT_EXACTLY_ONCE = False  # see tests/test_crash.py: a send the kill cut before it was recorded repeats
DRAIN_TIMEOUT = 600.0


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


# ----- the nodes --------------------------------------------------------------------------------


class Node(ServeProcess):
    """One ``threadline serve --role all`` process, started again on the same port and data dir."""

    def __init__(self, name: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.smtp_port = free_port()
        node_env = env | {
            "THREADLINE_DATA_DIR": str(tmp_path / name / "data"),
            "THREADLINE_EMAIL__SMTP_LISTEN": f"127.0.0.1:{self.smtp_port}",
        }
        super().__init__(tmp_path / f"serve-{name}.log", node_env, "--role", "all")
        self.up = False  # the balancer sends here (ready, not killed)
        self.wanted = False  # started (or being started): the next kill waits for it to be up

    async def start(self) -> None:
        self.wanted = True
        await super().start()
        self.up = True

    def kill(self) -> int:
        """SIGKILL: no shutdown hook, no lease released; whatever was in flight is cut. Returns the pid."""
        self.up = self.wanted = False
        pid = super().kill()
        assert pid is not None, f"node {self.name} is not running"
        return pid

    async def stop(self) -> None:
        self.up = self.wanted = False
        await super().stop()

    def grep(self, pattern: str) -> list[str]:
        """The log lines (of every start) matching ``pattern``, prefixed with this node's name."""
        found = re.compile(pattern)
        return [
            f"{self.name}: {line}"
            for line in self.log.read_text(errors="replace").splitlines()
            if found.search(line)
        ]


class Balancer:
    """Round robin over the live nodes, avoiding one node where another is up."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self._turn = 0

    async def pick(self, avoid: Node | None = None) -> Node:
        while True:
            live = [node for node in self.nodes if node.up]
            choices = [node for node in live if node is not avoid] or live
            if choices:
                self._turn += 1
                return choices[self._turn % len(choices)]
            await asyncio.sleep(0.05)


# ----- the platforms' side ----------------------------------------------------------------------


@dataclass
class Call:
    """One call of the burst; a rejected one is made again on another node (``attempts`` + 1)."""

    delivery: Delivery
    duplicate: bool  # a platform's re-send of an earlier call
    attempts: int = 0
    last: Node | None = None

    @property
    def by_smtp(self) -> bool:
        """Half of the email comes by SMTP to a node's listener (as an MTA hands it on)."""
        return self.delivery.customer.channel == "email" and self.delivery.k % 2 == 1


@dataclass
class Ledger:
    """What the platforms saw."""

    accepted_calls: int = 0  # 2xx / 250 answers (a duplicate answered 2xx counts here too)
    rejected_calls: int = 0  # anything else, or a dead connection: sent again to another node
    statuses: Counter[str] = field(default_factory=Counter)
    accepted_tags: set[str] = field(default_factory=set)
    per_node: Counter[str] = field(default_factory=Counter)  # accepted calls per node
    first_node: dict[str, Node] = field(default_factory=dict)  # where each message was first sent
    cross_node_duplicates: int = 0  # duplicates accepted by another node than the original went to


async def submit(call: Call, node: Node, client: httpx.AsyncClient) -> str:
    """Send ``call`` to ``node``; the answer as a label, ``"ok"`` when the platform counts it delivered."""
    delivery = call.delivery
    if call.by_smtp:
        try:
            await aiosmtplib.send(
                delivery.mime.encode(),
                sender=delivery.customer.email,
                recipients=[OUR_EMAIL],
                hostname="127.0.0.1",
                port=node.smtp_port,
                start_tls=False,
                timeout=60,
            )
        except aiosmtplib.SMTPResponseException as exc:
            return f"smtp {exc.code}"
        except (aiosmtplib.SMTPException, OSError) as exc:
            return type(exc).__name__
        return "ok"
    path, body, headers = delivery.request(call.attempts)
    try:
        response = await client.post(node.url + path, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "ok" if 200 <= response.status_code < 300 else str(response.status_code)


async def play(calls: list[Call], balancer: Balancer, ledger: Ledger) -> None:
    """Send every call until each got a 2xx; a rejected call goes again, first, to another node."""
    pending = deque(calls)
    outstanding = len(calls)

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal outstanding
        while outstanding:
            if not pending:
                await asyncio.sleep(0.02)  # the last calls are in flight; one may come back
                continue
            call = pending.popleft()
            tag = call.delivery.tag
            if call.attempts:
                await asyncio.sleep(min(1.0, 0.05 * call.attempts))  # a platform backs off a little
            original = ledger.first_node.get(tag) if call.duplicate else None
            node = await balancer.pick(avoid=call.last or original)
            ledger.first_node.setdefault(tag, node)
            answer = await submit(call, node, client)
            call.attempts += 1
            call.last = node
            ledger.statuses[answer] += 1
            if answer == "ok":
                outstanding -= 1
                ledger.accepted_calls += 1
                ledger.accepted_tags.add(tag)
                ledger.per_node[node.name] += 1
                if call.duplicate and original is not None and node is not original:
                    ledger.cross_node_duplicates += 1
            else:
                ledger.rejected_calls += 1
                pending.appendleft(call)

    limits = httpx.Limits(max_connections=SEND_CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(SEND_CONCURRENCY)))


# ----- the store --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Held:
    """A work row a killed process held a lease on (not released, not finished) when it died."""

    table: str
    row_id: int
    token: int
    tag: str | None  # the message it is about (inbox, outbox)
    node: str
    pid: int


HELD_SQL = """
SELECT 'inbox', i.id, i.lease_token, i.text FROM inbox i
 WHERE i.status = 'pending' AND i.lease_until IS NOT NULL AND split_part(i.lease_owner, ':', 2) = $1
UNION ALL
SELECT 'outbox', o.id, o.lease_token, i.text FROM outbox o LEFT JOIN inbox i ON o.inbox_id = i.id
 WHERE o.status = 'pending' AND o.lease_until IS NOT NULL AND split_part(o.lease_owner, ':', 2) = $1
UNION ALL
SELECT 'memory_jobs', m.id, m.lease_token, NULL FROM memory_jobs m
 WHERE m.status = 'pending' AND m.lease_until IS NOT NULL AND split_part(m.lease_owner, ':', 2) = $1
"""


async def held_by(conn: asyncpg.Connection, node: Node, pid: int) -> list[Held]:
    rows = await conn.fetch(HELD_SQL, str(pid))
    return [
        Held(
            table=str(table),
            row_id=int(row_id),
            token=int(token),
            tag=found.group(0) if text and (found := TAG_RE.search(str(text))) else None,
            node=node.name,
            pid=pid,
        )
        for table, row_id, token, text in rows
    ]


async def backlog(conn: asyncpg.Connection) -> tuple[int, int, int, int]:
    """(inbox rows, inbox pending, outbox pending, memory jobs pending)."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM inbox),"
        " (SELECT count(*) FROM inbox WHERE status = 'pending'),"
        " (SELECT count(*) FROM outbox WHERE status = 'pending'),"
        " (SELECT count(*) FROM memory_jobs WHERE status = 'pending')"
    )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


async def memories_of(
    database_url: str, customers: set[str], reader_dir: Path, nodes: list[Node]
) -> list[MemoryRecord]:
    """Every customer's memories: from the memory index on PostgreSQL (``core.memory.pg_index``), or, on a
    tree where the memory is not in PostgreSQL yet, from each node's data dir."""
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        shared = await conn.fetchval("SELECT to_regclass('memory_index_rows') IS NOT NULL")
    finally:
        await conn.close()
    if shared:
        stores = [
            LocalMemory(
                data_dir=reader_dir, llm=LLMSettings(), index=lambda: mem0_oss.postgres_index(database_url)
            )
        ]
    else:
        stores = [
            LocalMemory(data_dir=Path(node.env["THREADLINE_DATA_DIR"]), llm=LLMSettings()) for node in nodes
        ]
    out: list[MemoryRecord] = []
    for store in stores:
        try:
            for customer in sorted(customers):
                out += await store.list(customer)
        finally:
            await store.aclose()
    return out


# ----- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_kill_9_of_one_of_three_processes_loses_nothing_and_doubles_nothing(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    deliveries = burst(deliveries=DELIVERIES, customers=CUSTOMERS, duplicate_share=DUPLICATE_SHARE)
    by_tag = {delivery.tag: delivery for delivery in deliveries}
    seen: set[str] = set()
    calls: list[Call] = []
    for delivery in deliveries:
        calls.append(Call(delivery, duplicate=delivery.tag in seen))
        seen.add(delivery.tag)
    unique = len(by_tag)
    ledger = Ledger()
    held: list[Held] = []  # rows the killed processes held when they died: to be taken over
    window: set[str] = set()  # messages whose reply a killed process was sending (see ``kill``)
    kill_log: list[str] = []

    with (
        FakeTelegramAPI(token=TELEGRAM_TOKEN) as telegram,
        FakeSlackAPI(team_id=SLACK_TEAM, bot_user_id=SLACK_BOT_USER) as slack,
        FakeTwilioAPI(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
        FakeSmtpRelay() as relay,
        FakeOpenAI(delay=LLM_DELAY, responder=model) as llm,
    ):

        def sent_now() -> int:  # polled: counts only (the fakes run in this process's threads)
            return len(telegram.sent) + len(slack.posted) + len(twilio.messages) + len(relay.messages)

        env = subprocess_env(
            tmp_path,
            THREADLINE_DATABASE_URL=database_url,
            THREADLINE_PUBLIC_BASE_URL=PUBLIC,
            THREADLINE_LLM__API_KEY="sk-test",
            THREADLINE_LLM__BASE_URL=llm.base_url,
            THREADLINE_LLM__MAX_RETRIES="0",
            THREADLINE_MEMORY__WRITE_POLICY="every_turn",
            # the default: NOTIFY wakes the lanes; the poll finds retries falling due and lapsed leases
            THREADLINE_WORKER__POLL_INTERVAL="1.0",
            THREADLINE_WORKER__BACKOFF_BASE="0.2",
            THREADLINE_WORKER__BACKOFF_MAX="2",
            THREADLINE_WORKER__LEASE_SECONDS=str(LEASE_SECONDS),
            THREADLINE_TELEGRAM__BOT_TOKEN=TELEGRAM_TOKEN,
            THREADLINE_TELEGRAM__SECRET_TOKEN=TELEGRAM_SECRET,
            THREADLINE_TELEGRAM__API_BASE_URL=telegram.api_base_url,
            THREADLINE_SLACK__BOT_TOKEN=slack.token,
            THREADLINE_SLACK__SIGNING_SECRET=SLACK_SECRET,
            THREADLINE_SLACK__API_BASE_URL=slack.api_url,
            THREADLINE_TWILIO__ACCOUNT_SID=TWILIO_SID,
            THREADLINE_TWILIO__AUTH_TOKEN=TWILIO_TOKEN,
            THREADLINE_TWILIO__FROM_NUMBER=OUR_NUMBER,
            THREADLINE_TWILIO__API_BASE_URL=twilio.url,
            THREADLINE_EMAIL__ADDRESS=f"Threadline Support <{OUR_EMAIL}>",
            THREADLINE_EMAIL__SMTP_HOST="127.0.0.1",
            THREADLINE_EMAIL__SMTP_PORT=str(relay.port),
            THREADLINE_EMAIL__INBOUND_SIGNING_KEY=EMAIL_KEY,
            THREADLINE_EMAIL__AUTHSERV_ID=AUTHSERV_ID,
            THREADLINE_EMAIL__TRUSTED_RELAYS="127.0.0.1/32",  # the test is the MTA in front of the listeners
            THREADLINE_EMAIL__MAX_REPLIES_PER_HOUR="10000",
        )
        migrated = subprocess.run(
            threadline_cmd("migrate"), env=env, capture_output=True, text=True, timeout=120
        )
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        nodes = [Node(name, tmp_path, env) for name in NODES]
        balancer = Balancer(nodes)
        db = await asyncpg.connect(_dsn(database_url))
        restarts: list[asyncio.Task[None]] = []

        async def kill(node: Node, *, restart: bool, when: str) -> None:
            # a node restarted after the last kill is back first: two nodes at least take the traffic
            others = [other for other in nodes if other is not node]
            while not all(other.up for other in others if other.wanted) or not any(o.up for o in others):
                await asyncio.sleep(0.05)
            assert node.proc is not None
            # the replies the process is sending as it dies: held just before the kill or just after it (a
            # lease may lapse, and be taken over, before the query after the kill runs)
            sending = await held_by(db, node, node.proc.pid)
            pid = node.kill()
            await node.reap()
            lost_leases = await held_by(db, node, pid)
            held.extend(lost_leases)
            window.update(h.tag for h in sending + lost_leases if h.table == "outbox" and h.tag is not None)
            kill_log.append(
                f"{when}: node {node.name} (pid {pid}) held"
                f" {dict(Counter(h.table for h in lost_leases))}, restart={restart}"
            )
            if restart:
                restarts.append(asyncio.create_task(node.start()))

        async def kills_during_the_burst() -> None:
            for share, index, restart in BURST_KILLS:
                while ledger.accepted_calls < share * DELIVERIES:
                    await asyncio.sleep(0.02)
                await kill(nodes[index], restart=restart == "now", when=f"burst {share:.0%}")

        try:
            await asyncio.gather(*(node.start() for node in nodes))
            # the burst, over the live nodes; kill -9 at each point; rejected calls go to another node
            await asyncio.gather(play(calls, balancer, ledger), kills_during_the_burst())
            assert ledger.accepted_tags == set(by_tag), "a call was never accepted"
            await asyncio.gather(*restarts)
            await asyncio.gather(
                *(nodes[i].start() for _, i, restart in BURST_KILLS if restart == "after_burst")
            )

            # once more while the backlog drains; the others finish the dead node's work
            replied_at_end = sent_now()
            share, index = DRAIN_KILL
            kill_at = replied_at_end + max(1, int((unique - replied_at_end) * share))
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while sent_now() < kill_at:
                assert time.monotonic() < deadline, f"the backlog does not drain: {nodes[1].tail()}"
                await asyncio.sleep(0.05)
            await kill(nodes[index], restart=False, when=f"drain {share:.0%} ({replied_at_end} replied)")

            while True:
                rows, *left = await backlog(db)
                if rows == unique and not any(left):
                    break
                assert time.monotonic() < deadline, (
                    f"not drained: {rows} rows, left {left}: {nodes[1].tail()}"
                )
                await asyncio.sleep(0.25)
            await asyncio.gather(*(node.stop() for node in nodes))
            drained_at = time.monotonic()
        except BaseException:
            await db.close()
            raise
        finally:
            for task in restarts:
                task.cancel()
            for node in nodes:
                with contextlib.suppress(AssertionError):
                    node.kill()
                await node.reap()
        sent = replies_at(telegram, slack, twilio, relay)
        llm_calls = len(llm.calls)

        # ----- the store after the run -----------------------------------------------------------
        inbox = await db.fetch("SELECT id, status, customer_id, text, lease_token FROM inbox ORDER BY id")
        outbox = Counter(
            str(r[0])
            for r in await db.fetch("SELECT status FROM outbox WHERE idempotency_key LIKE 'reply:%'")
        )
        jobs = Counter(str(r[0]) for r in await db.fetch("SELECT status FROM memory_jobs"))
        final = {
            (str(table), int(row_id)): (str(status), int(token), str(owner or ""))
            for table, row_id, status, token, owner in await db.fetch(
                "SELECT 'inbox', id, status, lease_token, lease_owner FROM inbox"
                " UNION ALL SELECT 'outbox', id, status, lease_token, lease_owner FROM outbox"
                " UNION ALL SELECT 'memory_jobs', id, status, lease_token, lease_owner FROM memory_jobs"
            )
        }
        reclaimed = int(
            await db.fetchval(
                "SELECT (SELECT count(*) FROM inbox WHERE lease_token > 1)"
                " + (SELECT count(*) FROM outbox WHERE lease_token > 1)"
                " + (SELECT count(*) FROM memory_jobs WHERE lease_token > 1)"
            )
        )
        # for the diagnosis of a repeat: each message's outbox row and memory job
        outbox_of_inbox = {
            int(inbox_id): int(row_id)
            for row_id, inbox_id in await db.fetch(
                "SELECT id, inbox_id FROM outbox WHERE idempotency_key LIKE 'reply:%'"
            )
        }
        turn_inbox = {
            int(t): int(i) for t, i in await db.fetch("SELECT id, inbox_id FROM turns") if i is not None
        }
        job_of_inbox = {
            turn_inbox[int(turn)]: int(job_id)
            for job_id, turn_ids in await db.fetch("SELECT id, turn_ids FROM memory_jobs")
            for turn in json.loads(turn_ids)
            if int(turn) in turn_inbox
        }
        transactions = int(
            await db.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            )
        )
        await db.close()

    def trail(tag: str) -> list[str]:
        """What the nodes' logs say of ``tag``'s outbox row and memory job: who sent, who lost a lease."""
        inbox_id = row_of_tag.get(tag, -1)
        outbox_id, job_id = outbox_of_inbox.get(inbox_id), job_of_inbox.get(inbox_id)
        lines = [f"{tag}: inbox {inbox_id}, outbox {outbox_id}, memory job {job_id}"]
        patterns = [rf"\binbox {inbox_id}\b"]
        if outbox_id is not None:
            patterns.append(rf"\boutbox {outbox_id}\b|\breply:{outbox_id}\b")
        if job_id is not None:
            patterns.append(rf"\bmemory(_jobs| job) {job_id}\b")
        for node in nodes:
            lines += node.grep("|".join(patterns))
        lines += [f"held at a kill: {h}" for h in held if h.tag == tag]
        return lines

    tag_of_row = {f"inbox:{row[0]}": found.group(0) for row in inbox if (found := TAG_RE.search(row[3]))}
    row_of_tag = {tag: int(key.split(":")[1]) for key, tag in tag_of_row.items()}
    memories = await memories_of(database_url, {str(row[2]) for row in inbox}, tmp_path / "reader", nodes)
    written = Counter(m.message_ids for m in memories)

    # ----- what happened --------------------------------------------------------------------------
    per_tag = Counter(reply.tag for reply in sent)
    doubled = {tag: n for tag, n in per_tag.items() if n > 1}
    lost = sorted(set(by_tag) - set(per_tag))
    # a reply whose outbox row a killed process held may have reached the platform before the hub
    # recorded it: the process that takes the row over sends it once more (no idempotency keys here)
    resent = {tag: n for tag, n in doubled.items() if tag in window and n == 2}
    unexplained = {tag: n for tag, n in doubled.items() if tag not in resent}
    replied_once = sum(1 for tag, n in per_tag.items() if n == 1 and tag is not None)
    taken_over = [h for h in held if final[(h.table, h.row_id)][1] > h.token]
    suppressed = ledger.accepted_calls - unique

    # per customer, the replies in the order they reached the platform (a repeat after a kill counted at
    # its first arrival) against the order of the customer's inbox rows
    arrivals: dict[tuple[str, str], list[str]] = defaultdict(list)
    for reply in sent:
        if reply.tag is not None and reply.tag not in arrivals[(reply.channel, reply.target)]:
            arrivals[(reply.channel, reply.target)].append(reply.tag)
    out_of_order = {
        target: tags
        for target, tags in arrivals.items()
        if tags != sorted(tags, key=lambda t: row_of_tag.get(t, -1))
    }

    with capsys.disabled():
        print(
            f"\ncrash test, 3 processes on PostgreSQL: accepted {unique}, replied once {replied_once},"
            f" duplicates suppressed {suppressed} ({ledger.cross_node_duplicates} on another node than the"
            f" original), takeovers {len(taken_over)}, lost {len(lost)}"
            f" | re-sent after a kill in the send window {len(resent)}, other repeats {len(unexplained)},"
            f" customers out of order {len(out_of_order)}"
            f" | calls {DELIVERIES}, rejected and re-sent {ledger.rejected_calls},"
            f" answers {dict(ledger.statuses)}, accepted per node {dict(ledger.per_node)},"
            f" kills {sum(n.kills for n in nodes)}, starts {sum(n.starts for n in nodes)},"
            f" rows claimed more than once {reclaimed}, memories {len(memories)}, LLM calls {llm_calls},"
            f" database transactions {transactions} ({transactions / unique:.0f} per message),"
            f" drained in {drained_at - started:.0f} s, {time.monotonic() - started:.0f} s"
        )
        for line in kill_log:
            print(f"  kill -9 at {line}")
        lapsed = [line for node in nodes for line in node.grep(r"core\.store\.leases: lease on \S+ \d+ lost")]
        print(f"  leases lost by live processes (renewal too late, taken over): {len(lapsed)}")
        doubled_memories = [tag_of_row.get(ids[0], "?") for ids, n in written.items() if n > 1]
        for tag in sorted(unexplained)[:3] + doubled_memories[:3]:
            print("  " + "\n    ".join(trail(tag)))

    # ----- the store: every row done once; exactly one memory per message -----------------------
    assert len(inbox) == unique and {row[1] for row in inbox} == {"done"}, Counter(row[1] for row in inbox)
    assert sorted(tag_of_row.values()) == sorted(by_tag)
    assert outbox == Counter({"sent": unique}), outbox
    assert jobs == Counter({"done": unique}), jobs
    twice = [ids for ids, n in written.items() if n > 1]
    assert not twice, "\n".join(
        [f"{len(twice)} messages have more than one memory:"]
        + [line for ids in twice[:3] for line in trail(tag_of_row.get(ids[0], "?"))]
    )
    assert all(len(ids) == 1 for ids in written), written.most_common(5)
    assert sorted(ids[0] for ids in written) == sorted(tag_of_row)
    for m in memories:
        found = TAG_RE.search(m.text)
        assert found is not None and found.group(0) == tag_of_row[m.message_ids[0]], m

    # ----- takeovers: the dead processes' rows were finished by others, under a higher token ------
    assert held, f"no kill caught a process holding a row: {kill_log}"
    not_taken = [h for h in held if h not in taken_over]
    assert not not_taken, f"rows a killed process held were not taken over: {not_taken[:10]}"
    for h in held:
        status, _, owner = final[(h.table, h.row_id)]
        assert status in ("done", "sent") and owner.split(":")[1] != str(h.pid), (
            h,
            final[(h.table, h.row_id)],
        )

    # ----- exactly one reply per message, to the right place, in order ---------------------------
    assert None not in per_tag, [r for r in sent if r.tag is None][:5]
    assert not lost, f"{len(lost)} accepted messages never answered: {lost[:10]}"
    for reply in sent:
        assert reply.tag is not None
        delivery = by_tag[reply.tag]
        assert (reply.channel, reply.target) == (delivery.customer.channel, delivery.customer.target)
        if reply.channel == "slack":
            assert reply.thread == delivery.slack_ts
        if reply.channel == "email":
            assert reply.thread == delivery.email_id
    assert not unexplained, "\n".join(
        [
            f"{len(unexplained)} messages answered more than once outside a kill's send window:"
            f" {sorted(unexplained.items())[:10]}"
        ]
        + [line for tag in sorted(unexplained)[:3] for line in trail(tag)]
    )
    if STRICT_EXACTLY_ONCE:
        assert not resent, f"{len(resent)} replies sent again after a kill: {sorted(resent)[:10]}"
    assert replied_once + len(resent) == unique == len(memories)
    assert not out_of_order, {
        target: [(tag, row_of_tag.get(tag)) for tag in tags]
        for target, tags in list(out_of_order.items())[:3]
    }
