"""The console's pages: the inbox (and its refreshed rows), a customer's timeline, the overview's charts,
and what every page keeps to (escaping, no inline script or style, labels)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import update

from core.store.models import Handoff, InboxRow, OutboxRow, Turn, utcnow
from core.web.console.render import render_text
from core.web.console.views import timeline
from tests.apphost import Served
from tests.core.web.console.conftest import Browser, conversation, services


async def open_handoff(
    served: Served, customer_id: str, *, status: str, minutes: int, operator: str | None = None
) -> None:
    now = utcnow()
    async with services(served).db.session() as session:
        session.add(
            Handoff(
                customer_id=customer_id,
                status=status,
                requested_by="customer" if operator is None else "operator",
                operator=operator,
                channel="telegram",
                opened_at=now - timedelta(minutes=minutes),
                taken_at=now if operator else None,
            )
        )


async def test_the_inbox_lists_waiting_handoffs_first_then_owned_then_recent(
    served: Served, agent: Browser
) -> None:
    owned = await conversation(served, "telegram:1", ("customer", "owned one"))
    waiting_long = await conversation(served, "telegram:2", ("customer", "waiting long"))
    waiting_new = await conversation(served, "telegram:3", ("customer", "I want a human"))
    quiet = await conversation(
        served, "sms:+15551230000", ("customer", "just a question"), ("assistant", "an answer")
    )
    await open_handoff(served, owned, status="owned", minutes=30, operator="ada")
    await open_handoff(served, waiting_new, status="waiting", minutes=2)
    await open_handoff(served, waiting_long, status="waiting", minutes=12)
    rows = await agent.get("/console/inbox/rows")
    assert rows.status_code == 200
    order = [
        m.group(1)
        for m in re.finditer(
            r'<li class="row handoff-\w+" data-status="\w+">\s*<a href="/console/customers/(cus_\w+)"',
            rows.text,
        )
    ]
    assert order == [waiting_long, waiting_new, owned]
    assert "waiting 12 min" in rows.text and "waiting 2 min" in rows.text and "owned by ada" in rows.text
    recent = rows.text.split("Recent conversations", 1)[1]
    assert f'href="/console/customers/{quiet}"' in recent and "an answer" in recent
    assert '<span class="channel">sms</span>' in recent
    # the page holds the same rows inside the live region that htmx refreshes
    page = await agent.get("/console/")
    assert '<section id="inbox" aria-live="polite"' in page.text
    assert 'hx-get="/console/inbox/rows" hx-trigger="every 3s"' in page.text
    version = re.search(r'id="inbox-version" name="v" value="(\w+)"', rows.text)
    assert version is not None
    unchanged = await agent.get("/console/inbox/rows", params={"v": version.group(1)})
    assert unchanged.status_code == 204  # htmx swaps nothing: the live region stays quiet


async def test_the_timeline_shows_every_channel_roles_operators_recalled_memories_and_notes(
    served: Served, agent: Browser
) -> None:
    customer = await conversation(
        served,
        "telegram:42",
        ("customer", "my router <b>drops</b> the wifi"),
        ("assistant", "have you tried turning it off?"),
    )
    now = utcnow()
    async with services(served).db.session() as session:
        await session.execute(
            update(Turn).where(Turn.role == "assistant").values(recalled=["mem-known", "mem-gone"])
        )
        session.add_all(
            [
                Turn(
                    customer_id=customer,
                    channel="sms",
                    address="sms:+1555",
                    role="withheld",
                    text="",
                    created_at=now,
                ),
                Turn(
                    customer_id=customer,
                    channel="telegram",
                    address="telegram:42",
                    role="operator",
                    operator="ada",
                    text="Ada here",
                    created_at=now + timedelta(seconds=1),
                ),
            ]
        )
    page = await agent.get(f"/console/customers/{customer}")
    html = page.text
    assert '<ol id="timeline">' in html
    assert '<li data-channel="telegram" data-role="customer"' in html
    assert '<li data-channel="telegram" data-role="assistant"' in html
    assert (
        '<li data-channel="telegram" data-role="operator"' in html
        and '<span class="operator">ada</span>' in html
    )
    assert "my router &lt;b&gt;drops&lt;/b&gt; the wifi" in html  # autoescaped
    assert "A reply was withheld here" in html
    assert "recalled: " in html and "mem-gone (gone)" in html
    assert 'hx-get="/console/customers/' in html and 'hx-trigger="every 3s"' in html
    assert '<label for="reply-text">Reply</label>' in html and '<textarea id="reply-text" name="text"' in html
    assert ">Send reply</button>" in html and ">Take over</button>" in html and ">Hand back</button>" in html
    assert 'href="/console/customers/' in html and ">Export JSON</a>" in html
    assert ">Forget this customer</button>" in html
    # a recalled memory that the customer still has links to the memories section
    items = await timeline(services(served), customer, {"mem-known"})
    assert '<a href="#memory-mem-known">mem-known</a>' in render_text("timeline.html", items=items)


async def test_the_overview_draws_accessible_svg_charts_with_tables(served: Served, agent: Browser) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "hello"))
    await conversation(served, "sms:+15551230000", ("customer", "hi"))
    now = utcnow()
    async with services(served).db.session() as session:
        inbox = InboxRow(
            channel="telegram",
            provider_message_id="timed",
            sender="telegram:42",
            text="timed",
            received_at=now - timedelta(seconds=30),
            customer_id=customer,
            status="done",
        )
        session.add(inbox)
        await session.flush()
        session.add(
            OutboxRow(
                inbox_id=inbox.id,
                idempotency_key="reply:timed",
                channel="telegram",
                recipient="telegram:42",
                customer_id=customer,
                text="answer",
                status="sent",
                sent_at=now - timedelta(seconds=18),
                origin="bot",
            )
        )
    await open_handoff(served, customer, status="waiting", minutes=1)
    page = await agent.get("/console/overview")
    assert page.status_code == 200
    html = page.text
    assert html.count('<svg class="chart" role="img"') == 3
    assert '<title id="messages-title">Messages per channel per hour, last 24 hours</title>' in html
    assert "3 messages received in the last 24 hours, sms: 1, telegram: 2" in html
    assert "Median time from a message to the bot&#39;s reply: 12.0 s over 1 replies." in html
    assert "1 waiting for a person, 0 owned by an operator." in html
    assert "<caption>Messages received per hour (UTC) and channel</caption>" in html


async def test_pages_carry_no_inline_script_or_style_and_every_input_is_labelled(
    served: Served, admin: Browser
) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "hello"))
    for path in (
        "/console/",
        f"/console/customers/{customer}",
        "/console/overview",
        "/console/dead-letters",
        f"/console/customers/{customer}/forget",
    ):
        response = await admin.get(path)
        assert response.status_code == 200, path
        html = response.text
        assert " style=" not in html and "<style" not in html, path
        assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", html)), path
        assert 'href="#main">Skip to main content</a>' in html and '<main id="main"' in html
        for field in re.findall(r"<(?:input|textarea)\b[^>]*>", html):
            if 'type="hidden"' in field:
                continue
            field_id = re.search(r'id="([^"]+)"', field)
            assert field_id is not None and f'<label for="{field_id.group(1)}"' in html, (path, field)
        assert response.headers["cache-control"] == "no-store"
    for name, kind in (("htmx.min.js", "text/javascript"), ("console.css", "text/css")):
        static = await admin.get(f"/console/static/{name}")
        assert static.status_code == 200 and static.headers["content-type"].startswith(kind)
    assert (await admin.get("/console/static/../render.py")).status_code == 404
    assert (await admin.get("/console/static/VENDORED.md")).status_code == 404


async def test_the_customer_page_lists_cases_and_marks_replaced_memories(
    served: Served, agent: Browser
) -> None:
    from core.messages import ChatMessage, Provenance
    from core.store.models import Case

    customer = await conversation(served, "telegram:42", ("customer", "I was charged twice <again>"))
    svc = services(served)
    now = utcnow()
    async with svc.db.session() as session:
        session.add_all(
            [
                Case(
                    customer_id=customer,
                    title="charged twice <again>",
                    status="resolved",
                    opened_at=now - timedelta(days=2),
                    resolved_at=now - timedelta(days=1),
                    opened_by="rules",
                    resolved_by="rules",
                    channel="telegram",
                    turn_ids=[],
                    summary="refunded the second charge",
                    rating=5,
                ),
                Case(
                    customer_id=customer,
                    title="router drops wifi",
                    status="open",
                    opened_at=now,
                    opened_by="rules",
                ),
            ]
        )
    provenance = Provenance(channel="telegram", handle="telegram:42", message_ids=(), category="profile")
    for text in ("My address is 1 Elm Street, Leeds.", "I moved to 9 Oak Avenue, Porto."):
        ids = await svc.memory.remember(
            customer, [ChatMessage(role="user", content=text)], provenance=provenance, infer=False
        )
        await svc.memory.supersede(customer, ids)
    html = (await agent.get(f"/console/customers/{customer}")).text
    assert '<section id="cases" aria-labelledby="cases-heading">' in html
    assert 'data-status="resolved"' in html and 'data-status="open"' in html
    assert (
        "charged twice &lt;again&gt;" in html and "rated 5/5" in html and "refunded the second charge" in html
    )
    cases = html[html.index('<section id="cases"') : html.index('<section id="memories"')]
    assert cases.index("router drops wifi") < cases.index("charged twice &lt;again&gt;")  # newest first
    memories = html[html.index('<section id="memories"') :]
    old, new = memories.index("1 Elm Street"), memories.index("9 Oak Avenue")
    replaced = memories.index("replaced by a newer statement")
    assert replaced > old and (new < old or replaced < new)  # the mark is on the old statement's entry
    assert memories.count("replaced by a newer statement") == 1
