"""The admin API through the real app over HTTP: signed SMS and Telegram webhooks make the customers,
``/admin/...`` links, unlinks, merges and undoes, and every answer and the state behind it is checked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from core.errors import MemoryUnavailable
from core.messages import Address
from core.store.models import Customer, IdentityEvent, InboxRow, MemoryJob, MemoryMove, OutboxRow, Turn
from identity.ledger import current_state, ledger, replay
from tests.apphost import Served, app_settings, serving
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import telegram_settings, twilio_settings

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "admin-test-twilio-auth-token"
OUR_NUMBER = "+15558675310"
TELEGRAM_SECRET = "admin-test-telegram-secret"
PHONE = "+15551230000"
SMS = f"sms:{PHONE}"
TELEGRAM = "telegram:42"

# every admin route, as the OpenAPI document must list it
ROUTES = {
    ("get", "/admin/customers"),
    ("get", "/admin/customers/{customer_id}"),
    ("post", "/admin/identities/link"),
    ("post", "/admin/identities/unlink"),
    ("post", "/admin/customers/merge"),
    ("post", "/admin/merges/{merge_id}/undo"),
    ("get", "/admin/ledger"),
    ("get", "/admin/merge-suggestions"),
    ("delete", "/admin/customers/{customer_id}"),
    ("get", "/admin/customers/{customer_id}/export"),
    ("get", "/admin/dead-letters"),
    ("post", "/admin/dead-letters/{outbox_id}/retry"),
    ("post", "/admin/customers/{customer_id}/handoff"),
    ("delete", "/admin/customers/{customer_id}/handoff"),
    ("get", "/admin/handoffs"),
    ("post", "/admin/customers/{customer_id}/replies"),
    ("get", "/admin/customers/{customer_id}/memories"),
    ("get", "/admin/customers/{customer_id}/cases"),
    ("post", "/admin/customers/{customer_id}/cases"),
    ("post", "/admin/customers/{customer_id}/cases/{case_id}/resolve"),
    ("post", "/admin/event-endpoints"),
    ("get", "/admin/event-endpoints"),
    ("delete", "/admin/event-endpoints/{endpoint_id}"),
    ("get", "/admin/event-endpoints/{endpoint_id}/deliveries"),
    ("post", "/admin/event-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"),
}


# ----- the platforms' side ----------------------------------------------------------------------


@pytest.fixture
async def platforms() -> AsyncIterator[tuple[FakeTwilioAPI, FakeTelegramAPI]]:
    async with (
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeTelegramAPI() as telegram,
    ):
        yield twilio, telegram


@pytest.fixture
async def served(platforms: tuple[FakeTwilioAPI, FakeTelegramAPI], tmp_path: Path) -> AsyncIterator[Served]:
    """The app with SMS and Telegram on (offline mode: replies show what memory recalled)."""
    twilio, telegram = platforms
    settings = app_settings(
        tmp_path / "data",
        admin_token=SecretStr(TOKEN),
        public_base_url=PUBLIC,
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        telegram=telegram_settings(telegram, secret=TELEGRAM_SECRET),
    )
    async with serving(settings) as app:
        yield app


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[Served]:
    """The app with no channel: customers are made through the hub's resolver."""
    async with serving(app_settings(tmp_path / "data", admin_token=SecretStr(TOKEN))) as app:
        yield app


async def send_sms(served: Served, sid: str, text: str) -> None:
    form = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": PHONE, "To": OUR_NUMBER}
    form |= {"Body": text, "NumMedia": "0"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC}/webhooks/twilio/sms", form)
    response = await served.client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
    )
    assert response.status_code == 200


async def send_telegram(served: Served, update_id: int, text: str, user: int = 42) -> None:
    message = {
        "message_id": update_id,
        "date": 1_764_000_000,
        "chat": {"id": user, "type": "private", "first_name": "Ana"},
        "from": {"id": user, "is_bot": False, "first_name": "Ana"},
        "text": text,
    }
    response = await served.client.post(
        "/webhooks/telegram",
        content=json.dumps({"update_id": update_id, "message": message}),
        headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET},
    )
    assert response.status_code == 200


async def settle(served: Served) -> None:
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


# ----- the admin's side -------------------------------------------------------------------------


async def call(
    served: Served,
    method: str,
    path: str,
    *,
    expect: int = 200,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> Any:
    response = await served.client.request(method, path, headers=AUTH if headers is None else headers, **kw)
    assert response.status_code == expect, response.text
    return response.json()


async def customer_with(served: Served, address: str) -> str:
    page = await call(served, "GET", "/admin/customers", params={"search": address})
    [customer] = page["customers"]
    return str(customer["id"])


async def show(served: Served, customer_id: str) -> dict[str, Any]:
    detail: dict[str, Any] = await call(served, "GET", f"/admin/customers/{customer_id}")
    return detail


def memories(detail: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(m["text"], m["channel"], m["handle"]) for m in detail["memories"]}


async def new_customer(served: Served, address: str) -> str:
    return (await served.hub.resolver.resolve(Address.parse(address))).customer_id


async def ledger_length(served: Served) -> int:
    async with served.hub.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(IdentityEvent)) or 0)


async def snapshot(served: Served) -> dict[str, Any]:
    """Where every identity, message and memory is, and the ledger's replay equal to the tables."""
    async with served.hub.db.session() as session:
        state = await current_state(session)
        assert replay(await ledger(session)) == state
        customers = list(await session.scalars(select(Customer.id)))
        rows = {
            model.__tablename__: {row.id: row.customer_id for row in await session.scalars(select(model))}
            for model in (Turn, InboxRow, OutboxRow, MemoryJob)
        }
    held = {}
    for customer in customers:
        for record in await served.hub.memory.list(customer):
            held[record.id] = (customer, record.text, record.metadata)
    return {"identities": state.identities, "merged": state.merged_into, **rows, "memories": held}


def telegram_texts(fake: FakeTelegramAPI, user: int = 42) -> list[str]:
    return [str(m["text"]) for m in fake.sent if int(m["chat"]["id"]) == user]


# ----- the scenario -----------------------------------------------------------------------------


async def test_admin_links_sms_and_telegram_then_unlinking_takes_the_handles_memories_away(
    served: Served, platforms: tuple[FakeTwilioAPI, FakeTelegramAPI]
) -> None:
    _, telegram = platforms
    await send_sms(served, "SM" + "a" * 32, "my router keeps dropping the wifi")
    await send_telegram(served, 1, "please write after 6pm")
    await settle(served)
    ana, stranger = await customer_with(served, SMS), await customer_with(served, TELEGRAM)
    assert ana != stranger

    linked = await call(
        served,
        "POST",
        "/admin/identities/link",
        json={"address": "Telegram:042", "customer_id": ana, "reason": "same person, checked by phone"},
        headers={**AUTH, "x-threadline-actor": "alice (ops)"},
    )

    assert linked == {
        "event_id": linked["event_id"],
        "kind": "link",
        "customer_id": ana,
        "from_customer_id": stranger,
        "addresses": [TELEGRAM],
        "memory_moves_pending": 0,
    }
    entries = (await call(served, "GET", "/admin/ledger", params={"address": TELEGRAM}))["entries"]
    assert [(e["kind"], e["actor"], e["reason"]) for e in entries] == [
        ("create", "system", None),
        ("link", "admin:aliceops", "same person, checked by phone"),
    ]
    assert entries[-1]["id"] == linked["event_id"]
    detail = await show(served, ana)
    assert [(i["address"], i["assurance"], i["method"]) for i in detail["identities"]] == [
        (SMS, "platform_attested", "first_contact"),
        (TELEGRAM, "admin_linked", "admin"),
    ]
    assert memories(detail) == {
        ("my router keeps dropping the wifi", "sms", SMS),
        ("please write after 6pm", "telegram", TELEGRAM),
    }
    assert memories(await show(served, stranger)) == set()

    # a memory made on SMS is recalled on Telegram
    await send_telegram(served, 2, "what was the problem with my router?")
    await settle(served)
    assert "my router keeps dropping the wifi (sms," in telegram_texts(telegram)[-1]
    detail = await show(served, ana)
    assert {(t["address"], t["role"]) for t in detail["recent_turns"]} == {
        (SMS, "customer"),
        (SMS, "assistant"),
        (TELEGRAM, "customer"),
        (TELEGRAM, "assistant"),
    }
    said = [t["text"] for t in detail["recent_turns"] if t["role"] == "customer"]
    assert sorted(said[:2]) == ["my router keeps dropping the wifi", "please write after 6pm"]
    assert said[2:] == ["what was the problem with my router?"]  # oldest first, on both channels

    unlinked = await call(
        served, "POST", "/admin/identities/unlink", json={"address": TELEGRAM, "reason": "wrong person"}
    )

    alone = unlinked["customer_id"]
    assert alone not in (ana, stranger)
    assert (unlinked["kind"], unlinked["from_customer_id"], unlinked["addresses"]) == (
        "unlink",
        ana,
        [TELEGRAM],
    )
    detail = await show(served, ana)
    assert [i["address"] for i in detail["identities"]] == [SMS]
    assert memories(detail) == {("my router keeps dropping the wifi", "sms", SMS)}
    assert {t["address"] for t in detail["recent_turns"]} == {SMS}
    own = await show(served, alone)
    assert [(i["address"], i["assurance"], i["method"]) for i in own["identities"]] == [
        (TELEGRAM, "platform_attested", "unlinked")
    ]
    assert memories(own) == {
        ("please write after 6pm", "telegram", TELEGRAM),
        ("what was the problem with my router?", "telegram", TELEGRAM),
    }
    await send_telegram(served, 3, "what was the problem with my router?")
    await settle(served)
    assert "router keeps dropping" not in telegram_texts(telegram)[-1]
    assert len(telegram_texts(telegram)) == 3


async def test_merge_then_undo_through_the_api_restores_the_exact_state(served: Served) -> None:
    await send_sms(served, "SM" + "b" * 32, "my router keeps dropping the wifi")
    await send_sms(served, "SM" + "c" * 32, "I was billed twice for the router rental")
    await send_telegram(served, 11, "please write to me after 6pm")
    await settle(served)
    source, target = await customer_with(served, SMS), await customer_with(served, TELEGRAM)
    before = await snapshot(served)

    merged = await call(
        served, "POST", "/admin/customers/merge", json={"source": source, "target": target, "reason": "one"}
    )

    assert merged == {
        "event_id": merged["merge_id"],
        "merge_id": merged["merge_id"],
        "kind": "merge",
        "customer_id": target,
        "from_customer_id": source,
        "addresses": [SMS],
        "memory_moves_pending": 0,
    }
    listed = await call(served, "GET", "/admin/customers")
    assert [c["id"] for c in listed["customers"]] == [target] and listed["total"] == 1
    everyone = await call(served, "GET", "/admin/customers", params={"include_merged": "true"})
    assert {(c["id"], c["merged_into"]) for c in everyone["customers"]} == {(target, None), (source, target)}
    gone = await show(served, source)
    assert (gone["merged_into"], gone["merge_id"], gone["identities"], gone["memories"]) == (
        target,
        merged["merge_id"],
        [],
        [],
    )
    whole = await show(served, target)
    assert whole["merged_from"] == [source]
    assert sorted(i["address"] for i in whole["identities"]) == [SMS, TELEGRAM]
    assert {m["text"] for m in whole["memories"]} == {
        "my router keeps dropping the wifi",
        "I was billed twice for the router rental",
        "please write to me after 6pm",
    }
    await call(
        served, "POST", "/admin/customers/merge", json={"source": source, "target": target}, expect=409
    )

    undone = await call(served, "POST", f"/admin/merges/{merged['merge_id']}/undo", json={"reason": "two"})

    assert (undone["kind"], undone["customer_id"], undone["from_customer_id"], undone["addresses"]) == (
        "unmerge",
        source,
        target,
        [SMS],
    )
    assert await snapshot(served) == before
    entries = (await call(served, "GET", "/admin/ledger", params={"customer_id": source}))["entries"]
    assert [(e["kind"], e["actor"], e["undoes"]) for e in entries] == [
        ("create", "system", None),
        ("merge", "admin", None),
        ("unmerge", "admin", merged["merge_id"]),
    ]
    assert entries[1]["addresses"] == {SMS: "platform_attested"}
    await call(served, "POST", f"/admin/merges/{merged['merge_id']}/undo", json={}, expect=409)
    assert await snapshot(served) == before


async def test_a_memory_move_that_failed_is_finished_by_the_app_in_the_background(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    await send_sms(served, "SM" + "d" * 32, "my router keeps dropping the wifi")
    await send_telegram(served, 21, "please write after 6pm")
    await settle(served)
    ana, stranger = await customer_with(served, SMS), await customer_with(served, TELEGRAM)
    real_move = served.hub.memory.move

    async def down(*args: Any, **kwargs: Any) -> list[str]:
        raise MemoryUnavailable("memory move failed (test)")

    monkeypatch.setattr(served.hub.memory, "move", down)
    linked = await call(
        served, "POST", "/admin/identities/link", json={"address": TELEGRAM, "customer_id": ana}
    )
    assert linked["memory_moves_pending"] == 1
    assert memories(await show(served, stranger)) == {("please write after 6pm", "telegram", TELEGRAM)}

    monkeypatch.setattr(served.hub.memory, "move", real_move)
    for _ in range(100):  # the app's mover runs every second
        async with served.hub.db.session() as session:
            statuses = list(await session.scalars(select(MemoryMove.status)))
        if statuses == ["done"]:
            break
        await asyncio.sleep(0.1)
    assert statuses == ["done"]
    assert memories(await show(served, stranger)) == set()
    assert memories(await show(served, ana)) == {
        ("my router keeps dropping the wifi", "sms", SMS),
        ("please write after 6pm", "telegram", TELEGRAM),
    }


# ----- authentication ---------------------------------------------------------------------------


async def test_a_missing_or_wrong_token_is_401_and_changes_nothing(bare: Served) -> None:
    ana, bea = await new_customer(bare, SMS), await new_customer(bare, TELEGRAM)
    await new_customer(bare, "telegram:43")
    before, entries = await snapshot(bare), await ledger_length(bare)
    attempts: dict[str, dict[str, str]] = {
        "no header": {},
        "empty": {"authorization": ""},
        "no token": {"authorization": "Bearer"},
        "wrong token": {"authorization": "Bearer not-the-token"},
        "a prefix": {"authorization": f"Bearer {TOKEN[:-1]}"},
        "the token and more": {"authorization": f"Bearer {TOKEN}x"},
        "another case": {"authorization": f"Bearer {TOKEN.upper()}"},
        "basic auth": {"authorization": "Basic " + "YWRtaW46" + TOKEN},
        "the bare token": {"authorization": TOKEN},
    }
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/admin/identities/link", {"address": TELEGRAM, "customer_id": ana}),
        ("POST", "/admin/identities/unlink", {"address": "telegram:43"}),
        ("POST", "/admin/customers/merge", {"source": ana, "target": bea}),
        ("POST", "/admin/merges/1/undo", {}),
        ("GET", "/admin/customers", None),
        ("GET", f"/admin/customers/{ana}", None),
        ("GET", "/admin/ledger", None),
        ("GET", "/admin/merge-suggestions", None),
        ("DELETE", f"/admin/customers/{ana}", None),
        ("GET", f"/admin/customers/{ana}/export", None),
        ("GET", "/admin/dead-letters", None),
        ("POST", "/admin/dead-letters/1/retry", {}),
    ]
    refused: dict[tuple[str, str], tuple[int, str | None, str]] = {}
    for label, headers in attempts.items():
        for method, path, body in requests:
            response = await bare.client.request(method, path, headers=headers, json=body)
            refused[(label, path)] = (
                response.status_code,
                response.headers.get("www-authenticate"),
                response.json()["detail"],
            )
    assert set(refused.values()) == {(401, "Bearer", "a valid admin bearer token is required")}
    assert await ledger_length(bare) == entries
    assert await snapshot(bare) == before

    # the same call with the token goes through: the refusals were about the token alone
    linked = await call(
        bare, "POST", "/admin/identities/link", json={"address": TELEGRAM, "customer_id": ana}
    )
    assert linked["from_customer_id"] == bea
    assert await ledger_length(bare) == entries + 1


async def test_without_a_configured_token_every_admin_call_is_403(tmp_path: Path) -> None:
    async with serving(app_settings(tmp_path / "data")) as served:
        ana = await new_customer(served, SMS)
        await new_customer(served, TELEGRAM)
        entries = await ledger_length(served)
        for method, path in sorted(ROUTES):
            concrete = (
                path.replace("{customer_id}", ana).replace("{merge_id}", "1").replace("{outbox_id}", "1")
            )
            for headers in ({}, AUTH, {"authorization": "Bearer"}):
                response = await served.client.request(
                    method, concrete, headers=headers, json={"address": TELEGRAM, "customer_id": ana}
                )
                assert response.status_code == 403, (path, response.text)
                assert "THREADLINE_ADMIN_TOKEN" in response.json()["detail"]
        assert await ledger_length(served) == entries
        assert (await served.client.get("/healthz")).status_code == 200  # the rest of the app is on


# ----- errors -----------------------------------------------------------------------------------


async def test_errors_map_to_404_409_and_422_and_change_nothing(bare: Served) -> None:
    ana = await new_customer(bare, SMS)
    bea = await new_customer(bare, TELEGRAM)
    before, entries = await snapshot(bare), await ledger_length(bare)
    link, unlink, merge = "/admin/identities/link", "/admin/identities/unlink", "/admin/customers/merge"
    refusals: list[tuple[str, str, dict[str, Any] | None, int, str]] = [
        ("GET", "/admin/customers/cus_nobody", None, 404, "no customer for cus_nobody"),
        ("GET", "/admin/customers/telegram:99", None, 404, "no customer for telegram:99"),
        ("GET", "/admin/customers/telegram:99/export", None, 404, "no customer for telegram:99"),
        ("DELETE", "/admin/customers/telegram:99", None, 404, "no customer for telegram:99"),
        ("GET", "/admin/customers/pager:42", None, 422, "channel:handle"),
        ("GET", "/admin/ledger?customer_id=telegram:99", None, 404, "no customer for telegram:99"),
        (
            "POST",
            link,
            {"address": "telegram:43", "customer_id": "cus_nobody"},
            404,
            "no customer for cus_nobody",
        ),
        ("POST", link, {"address": "telegram:43", "customer_id": "telegram:99"}, 404, "no customer for"),
        ("POST", unlink, {"address": "telegram:43"}, 404, "no customer has the address telegram:…"),
        ("POST", merge, {"source": "cus_nobody", "target": ana}, 404, "no customer for cus_nobody"),
        ("POST", merge, {"source": ana, "target": "email:nobody@example.com"}, 404, "no customer for"),
        ("POST", "/admin/merges/999/undo", {}, 404, "ledger entry 999 is not a merge"),
        ("POST", "/admin/merges/1/undo", {}, 404, "ledger entry 1 is not a merge"),  # a create
        ("POST", merge, {"source": ana, "target": ana}, 409, "a customer cannot be merged into itself"),
        ("POST", unlink, {"address": SMS}, 409, "this is the customer's only handle"),
        ("POST", link, {"address": "telegram:@ana", "customer_id": ana}, 422, "numeric user id"),
        ("POST", unlink, {"address": "sms:12"}, 422, "phone number"),
        ("POST", link, {"address": "pager:42", "customer_id": ana}, 422, "channel:handle"),
        ("GET", "/admin/ledger?address=nonsense", None, 422, "channel:handle"),
    ]
    for method, path, body, status, words in refusals:
        detail = (await call(bare, method, path, json=body, expect=status))["detail"]
        assert words in detail, (path, body, detail)
    # a merged customer takes no new handle and cannot be merged again
    merged = await call(bare, "POST", merge, json={"source": ana, "target": bea})
    before_link = await ledger_length(bare)
    conflict = await call(bare, "POST", link, json={"address": "telegram:43", "customer_id": ana}, expect=409)
    assert conflict["detail"] == f"customer {ana} is merged into {bea}"
    await call(bare, "POST", merge, json={"source": bea, "target": ana}, expect=409)
    assert await ledger_length(bare) == before_link
    await call(bare, "POST", f"/admin/merges/{merged['merge_id']}/undo", json={})
    assert await ledger_length(bare) == entries + 2
    after = await snapshot(bare)
    assert (after["identities"], after["merged"]) == (before["identities"], before["merged"])


async def test_an_address_names_a_customer_wherever_an_id_does(bare: Served) -> None:
    """As on the command line: ``/admin/customers/sms:%2B1555...`` is the customer holding that number,
    in any spelling that normalises; an address is looked up, never made into a customer."""
    ana = await new_customer(bare, SMS)
    bea = await new_customer(bare, TELEGRAM)
    customers = len((await snapshot(bare))["identities"])

    for spelling in ("sms:%2B15551230000", "sms:+15551230000", "sms:(555)%20123-0000"):
        assert (await call(bare, "GET", f"/admin/customers/{spelling}"))["id"] == ana, spelling
    assert (await call(bare, "GET", "/admin/customers/sms:%2B15551230000/export"))["customer_id"] == ana
    entries = await call(bare, "GET", "/admin/ledger", params={"customer_id": TELEGRAM})
    assert {e["customer_id"] for e in entries["entries"]} == {bea}
    await call(bare, "GET", "/admin/customers/telegram:777", expect=404)
    assert len((await snapshot(bare))["identities"]) == customers  # looked up, not made

    linked = await call(
        bare, "POST", "/admin/identities/link", json={"address": "telegram:43", "customer_id": SMS}
    )
    assert linked["customer_id"] == ana
    merged = await call(bare, "POST", "/admin/customers/merge", json={"source": TELEGRAM, "target": SMS})
    assert (merged["from_customer_id"], merged["customer_id"]) == (bea, ana)
    receipt = await call(bare, "DELETE", "/admin/customers/telegram:43")
    assert receipt["customer_id"] == ana and bea in receipt["customer_ids"]
    await call(bare, "GET", f"/admin/customers/{SMS}", expect=404)  # forgotten, with its handles


# ----- search and suggestions -------------------------------------------------------------------


async def test_customers_are_found_by_a_handle_written_another_way(bare: Served) -> None:
    ana = await new_customer(bare, SMS)
    await new_customer(bare, TELEGRAM)
    for spelling in ("(555) 123-0000", "+1 555-123-0000", "1230000", SMS):
        page = await call(bare, "GET", "/admin/customers", params={"search": spelling})
        assert (page["total"], [(c["id"], c["addresses"]) for c in page["customers"]]) == (1, [(ana, [SMS])])
    nobody = await call(bare, "GET", "/admin/customers", params={"search": "(555) 999-0000"})
    assert (nobody["total"], nobody["customers"]) == (0, [])
    everyone = await call(bare, "GET", "/admin/customers", params={"limit": 1, "offset": 1})
    assert (everyone["total"], [c["id"] for c in everyone["customers"]]) == (2, [ana])
    await call(bare, "GET", "/admin/customers", params={"limit": 0}, expect=422)


async def test_a_gmail_dot_variant_is_suggested_and_not_merged(bare: Served) -> None:
    dotted = await new_customer(bare, "email:a.na+x@gmail.com")
    plain = await new_customer(bare, "email:ana@googlemail.com")
    await new_customer(bare, "email:a.na@example.com")
    await new_customer(bare, "email:ana@example.com")

    found = await call(bare, "GET", "/admin/merge-suggestions")

    assert found["suggestions"] == [
        {
            "kind": "gmail_variant",
            "customer_a": dotted,
            "address_a": "email:a.na+x@gmail.com",
            "customer_b": plain,
            "address_b": "email:ana@googlemail.com",
            "reason": "email:a.na+x@gmail.com and email:ana@googlemail.com are one Gmail mailbox "
            "(ana@gmail.com): Gmail ignores dots and +tags, and googlemail.com is gmail.com",
        }
    ]
    assert (await call(bare, "GET", "/admin/customers"))["total"] == 4  # nothing merged
    await call(bare, "POST", "/admin/customers/merge", json={"source": plain, "target": dotted})
    assert (await call(bare, "GET", "/admin/merge-suggestions"))["suggestions"] == []


# ----- the schema -------------------------------------------------------------------------------


def schema_of(document: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    ref = content["application/json"]["schema"]["$ref"]
    assert ref.startswith("#/components/schemas/")
    schema: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


async def test_the_openapi_document_lists_every_admin_route_with_its_schemas(bare: Served) -> None:
    response = await bare.client.get("/openapi.json", headers=AUTH)  # private by default (DOCS_PUBLIC)
    assert response.status_code == 200
    document = response.json()
    admin = {
        (method, path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if path.startswith("/admin")
    }
    assert set(admin) == ROUTES
    schemes = document["components"]["securitySchemes"]
    [(scheme_name, scheme)] = schemes.items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for (method, path), operation in admin.items():
        assert operation["tags"] == ["admin"], path
        assert operation["description"].strip(), f"{method} {path} has no docstring"
        assert {scheme_name: []} in operation["security"], path
        answer = schema_of(document, operation["responses"]["200"]["content"])
        assert answer["properties"], path
        assert {"401", "403"} <= set(operation["responses"]), path
        for status in set(operation["responses"]) - {"200"}:
            assert schema_of(document, operation["responses"][status]["content"])["properties"], status
        if method == "post":
            body = operation["requestBody"]
            assert body["required"] is True, path
            assert schema_of(document, body["content"])["properties"], path
    merge = admin[("post", "/admin/customers/merge")]
    assert {"404", "409", "422"} <= set(merge["responses"])
    assert "merge_id" in schema_of(document, merge["responses"]["200"]["content"])["required"]
    link = schema_of(document, admin[("post", "/admin/identities/link")]["requestBody"]["content"])
    assert set(link["properties"]) == {"address", "customer_id", "reason"}
    assert set(link["required"]) == {"address", "customer_id"}
    parameters = {p["name"] for p in admin[("get", "/admin/customers")]["parameters"]}
    assert {"search", "limit", "offset", "include_merged"} <= parameters
