"""The operator console in chromium: sign-in, the live inbox, take over / reply / hand back, merge and undo,
what an agent may not do, dead letters and the overview, the keyboard, and a phone's screen.

Everything is real but the platforms and the LLM: customers write through the signed Telegram and Twilio
webhooks, the worker answers through the official SDKs to the fakes of ``tests/fakes``, and an operator
works in a real browser. Nothing sleeps blindly: a step waits for the worker to finish the inbox row, for
the fake platform to receive a message, or (Playwright's ``expect``) for the page to show something.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from core.store.models import IdentityEvent
from tests.browser.support import (
    ADMIN,
    ADMIN_PASSWORD,
    AGENT,
    AGENT_PASSWORD,
    TIMEOUT_MS,
    Desk,
    sign_in,
)

try:
    from playwright.async_api import expect
except ImportError:  # the ``browser`` fixture skips every test (fails under CI=true) and says why
    expect = None

ANA, BRUNO = 424242, 515151  # Telegram users
ANA_PHONE = "+15551230000"
REFUND = "Your refund is on its way"


async def eventually(check: Callable[[], bool], what: str, timeout: float = TIMEOUT_MS / 1000) -> None:
    """Wait until ``check()`` holds (the fakes are filled from their own threads)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def customer_link(page: Any, customer_id: str) -> Any:
    """The customer's links in the inbox (an open handoff and a recent conversation may both list them)."""
    return page.locator(f'#inbox a[href$="/console/customers/{customer_id}"]')


# ----- signing in --------------------------------------------------------------------------------


async def test_a_wrong_password_is_refused_and_the_right_one_opens_the_inbox(desk: Desk, page: Any) -> None:
    await page.goto(f"{desk.url}/console/")
    await expect(page).to_have_url(re.compile(r"/console/login"))  # not signed in: sent to the form

    await page.get_by_label("Name").fill(ADMIN)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text("Wrong name or password.")).to_be_visible()
    assert "/console/login" in page.url

    await page.get_by_label("Name").fill(ADMIN)
    await page.get_by_label("Password").fill(ADMIN_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{desk.url}/console/")
    inbox = page.locator("section#inbox")
    await expect(inbox).to_be_visible()
    await expect(inbox).to_have_attribute("aria-live", "polite")


async def test_the_sign_in_form_works_with_tab_and_enter_only(desk: Desk, page: Any) -> None:
    await page.goto(f"{desk.url}/console/login")
    name = page.get_by_label("Name")
    for _ in range(10):  # the field may have the focus already; else past a skip link or a logo
        if await name.evaluate("field => field === document.activeElement"):
            break
        await page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reaches the Name field")
    await page.keyboard.type(ADMIN)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password")).to_be_focused()
    await page.keyboard.type(ADMIN_PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{desk.url}/console/")
    await expect(page.locator("section#inbox")).to_be_visible()


# ----- handoff: waiting, taken over, answered by a person, handed back ----------------------------------


async def test_a_customer_who_asks_for_a_human_is_taken_over_answered_and_handed_back(
    desk: Desk, page: Any
) -> None:
    await sign_in(page, desk, AGENT, AGENT_PASSWORD)  # an agent may do all of this
    inbox = page.locator("section#inbox")
    await page.evaluate("window.__notReloaded = true")

    # Bruno chats with the bot; Ana asks for a person: both arrive in the open inbox, Ana first
    bruno_key = await desk.telegram_message(BRUNO, "what are your opening hours?", name="Bruno")
    await desk.handled("telegram", bruno_key)
    key = await desk.telegram_message(ANA, "human")
    await desk.handled("telegram", key)
    ana, bruno = await desk.customer_of(f"telegram:{ANA}"), await desk.customer_of(f"telegram:{BRUNO}")
    [acknowledgement] = desk.telegram_texts(ANA)  # the bot's last word: a person will answer
    assert "person" in acknowledgement
    assert desk.telegram_texts(BRUNO) == ["Bot answer to: what are your opening hours?"]

    await expect(customer_link(page, ana).first).to_be_visible()  # by htmx, into the live region
    await expect(customer_link(page, bruno).first).to_be_visible()
    assert await page.evaluate("window.__notReloaded === true"), "the inbox reloaded the page"
    links = await inbox.locator('a[href*="/console/customers/"]').evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert links[0].endswith(f"/console/customers/{ana}"), f"the waiting handoff is not first: {links}"
    waiting = inbox.locator('li[data-status="waiting"]')
    await expect(waiting).to_have_count(1)
    await expect(waiting.locator(f'a[href$="/console/customers/{ana}"]')).to_be_visible()
    await expect(waiting).to_contain_text("waiting")

    # the agent takes over and answers
    await customer_link(page, ana).first.click()
    await page.wait_for_url(f"{desk.url}/console/customers/{ana}")
    timeline = page.locator("ol#timeline")
    await expect(
        timeline.locator('li[data-channel="telegram"][data-role="customer"]').filter(has_text="human")
    ).to_be_visible()
    status = page.locator("#handoff-status")
    await expect(status).to_contain_text("waiting")
    await page.get_by_role("button", name="Take over").click()
    await expect(status).to_contain_text(f"owned by {AGENT}")
    await page.get_by_label("Reply").fill(REFUND)
    await page.get_by_role("button", name="Send reply").click()
    await eventually(lambda: REFUND in desk.telegram_texts(ANA), "the operator's reply reaches Telegram")
    await expect(timeline.locator('li[data-role="operator"]').filter(has_text=REFUND)).to_be_visible()
    left = await desk.served.hub.wait_idle(timeout=30)
    assert not left["outbox"], left
    sends = [call for call in desk.telegram.calls_to("sendMessage") if call.get("text") == REFUND]
    assert len(sends) == 1 and int(sends[0]["chat_id"]) == ANA
    assert desk.telegram_texts(ANA) == [acknowledgement, REFUND]

    # while the agent owns it, the bot says nothing; the message shows in the timeline without a reload
    await page.evaluate("window.__notReloaded = true")
    key = await desk.telegram_message(ANA, "thanks! when will it arrive?")
    await desk.handled("telegram", key)
    assert desk.telegram_texts(ANA) == [acknowledgement, REFUND]
    await expect(
        timeline.locator('li[data-role="customer"]').filter(has_text="thanks! when will it arrive?")
    ).to_be_visible()
    assert await page.evaluate("window.__notReloaded === true"), "the timeline reloaded the page"
    assert len(desk.telegram_texts(ANA)) == 2  # still nothing from the bot

    # handed back: the bot answers the next message
    await page.get_by_role("button", name="Hand back").click()
    await expect(status).not_to_contain_text("owned")
    key = await desk.telegram_message(ANA, "and can I change my address?")
    await desk.handled("telegram", key)
    assert desk.telegram_texts(ANA) == [
        acknowledgement,
        REFUND,
        "Bot answer to: and can I change my address?",
    ]
    await expect(
        timeline.locator('li[data-role="assistant"]').filter(has_text="and can I change my address?")
    ).to_be_visible()


# ----- merge and undo (admins only) ------------------------------------------------------------------


async def _two_customers_one_phone(desk: Desk) -> tuple[str, str]:
    """Ana by SMS, and on Telegram sharing her own contact with the same number (held by the SMS
    customer: a merge suggestion, never merged by itself). Returns (sms customer, telegram customer)."""
    await desk.handled("sms", await desk.sms(ANA_PHONE, "my invoice is wrong"))
    await desk.handled("telegram", await desk.telegram_message(ANA, "hello, it's Ana again"))
    await desk.handled("telegram", await desk.telegram_contact(ANA, ANA_PHONE.lstrip("+")))
    by_sms, by_telegram = (
        await desk.customer_of(f"sms:{ANA_PHONE}"),
        await desk.customer_of(f"telegram:{ANA}"),
    )
    assert by_sms != by_telegram
    return by_sms, by_telegram


async def test_an_admin_merges_a_suggestion_and_undoes_it(desk: Desk, page: Any) -> None:
    by_sms, by_telegram = await _two_customers_one_phone(desk)
    await sign_in(page, desk, ADMIN, ADMIN_PASSWORD)
    await page.goto(f"{desk.url}/console/customers/{by_telegram}")

    await page.get_by_role("button", name="Merge", exact=True).click()
    await expect(page.get_by_role("button", name="Undo merge")).to_be_visible()
    assert await desk.customer_of(f"sms:{ANA_PHONE}") == await desk.customer_of(f"telegram:{ANA}")

    await page.get_by_role("button", name="Undo merge").click()
    await expect(page.get_by_role("button", name="Undo merge")).to_have_count(0)
    assert await desk.customer_of(f"sms:{ANA_PHONE}") == by_sms
    assert await desk.customer_of(f"telegram:{ANA}") == by_telegram

    # the page's ledger shows both, by this admin; so does the store
    ledger = page.locator("section[aria-labelledby=ledger-heading] tbody tr")
    by_admin = ledger.filter(has_text=f"operator:{ADMIN}")
    await expect(by_admin).to_have_count(2)
    await expect(by_admin.nth(0)).to_contain_text("merge")
    await expect(by_admin.nth(1)).to_contain_text("unmerge")
    async with desk.served.hub.db.session() as session:
        entries = list(
            await session.scalars(
                select(IdentityEvent)
                .where(IdentityEvent.kind.in_(("merge", "unmerge")))
                .order_by(IdentityEvent.id)
            )
        )
    assert [(e.kind, e.actor) for e in entries] == [
        ("merge", f"operator:{ADMIN}"),
        ("unmerge", f"operator:{ADMIN}"),
    ]
    assert entries[1].undoes == entries[0].id


async def test_an_agent_is_refused_merge_undo_forget_and_retry(
    desk: Desk, pages: Callable[..., Awaitable[Any]]
) -> None:
    by_sms, by_telegram = await _two_customers_one_phone(desk)
    desk.telegram.push_blocked()  # Bruno has blocked the bot: the answer fails for good (a dead letter)
    await desk.handled(
        "telegram", await desk.telegram_message(BRUNO, "are you open on Sunday?", name="Bruno")
    )
    agent = await pages()
    await sign_in(agent, desk, AGENT, AGENT_PASSWORD)
    customer_page = f"{desk.url}/console/customers/{by_telegram}"
    refused = agent.get_by_text(re.compile(r"^Only an admin can "))

    await agent.goto(customer_page)
    await agent.get_by_role("button", name="Merge", exact=True).click()
    await expect(refused).to_have_text("Only an admin can merge customers.")
    assert await desk.customer_of(f"sms:{ANA_PHONE}") == by_sms  # nothing merged

    await agent.goto(customer_page)
    await agent.get_by_role("button", name="Forget this customer").click()
    confirm = agent.get_by_label(re.compile("to confirm"))
    if await confirm.count():  # the confirmation page is shown to anyone; forgetting is not
        await confirm.fill(by_telegram)
        await agent.get_by_role("button", name="Forget this customer").click()
    await expect(refused).to_have_text("Only an admin can forget a customer.")
    assert await desk.customer_of(f"telegram:{ANA}") == by_telegram  # nothing forgotten

    await agent.goto(f"{desk.url}/console/dead-letters")
    await agent.get_by_role("button", name="Retry").click()
    await expect(refused).to_have_text("Only an admin can retry a dead letter.")

    # an admin merges; the agent may not undo it
    admin = await pages()
    await sign_in(admin, desk, ADMIN, ADMIN_PASSWORD)
    await admin.goto(customer_page)
    await admin.get_by_role("button", name="Merge", exact=True).click()
    await expect(admin.get_by_role("button", name="Undo merge")).to_be_visible()
    await agent.goto(customer_page)
    await agent.get_by_role("button", name="Undo merge").click()
    await expect(refused).to_have_text("Only an admin can undo a merge.")
    assert await desk.customer_of(f"sms:{ANA_PHONE}") == by_telegram  # still merged


# ----- dead letters and the overview ----------------------------------------------------------------


async def test_an_admin_retries_a_dead_letter_and_the_overview_draws_its_charts(
    desk: Desk, page: Any
) -> None:
    desk.telegram.push_blocked()  # the first answer is refused for good: a dead letter
    await desk.handled(
        "telegram", await desk.telegram_message(BRUNO, "are you open on Sunday?", name="Bruno")
    )
    assert desk.telegram_texts(BRUNO) == []
    await sign_in(page, desk, ADMIN, ADMIN_PASSWORD)

    await page.goto(f"{desk.url}/console/dead-letters")
    await expect(page.get_by_text("bot was blocked by the user")).to_be_visible()
    await page.get_by_role("button", name="Retry").click()
    await eventually(lambda: len(desk.telegram_texts(BRUNO)) == 1, "the retried reply reaches Telegram")
    assert desk.telegram_texts(BRUNO) == ["Bot answer to: are you open on Sunday?"]
    await page.goto(f"{desk.url}/console/dead-letters")
    await expect(page.get_by_role("button", name="Retry")).to_have_count(0)

    await page.goto(f"{desk.url}/console/overview")
    charts = page.locator('main svg[role="img"]')
    await expect(charts.first).to_be_visible()
    assert await charts.count() >= 2
    for number in range(await charts.count()):  # each chart is named for a screen reader
        assert (await charts.nth(number).get_attribute("aria-labelledby") or "").strip()


# ----- a phone's screen --------------------------------------------------------------------------


async def test_the_inbox_fits_a_phone_screen(desk: Desk, pages: Callable[..., Awaitable[Any]]) -> None:
    long = "my router keeps dropping the wifi every evening and " * 6
    await desk.handled("telegram", await desk.telegram_message(BRUNO, long, name="Bruno"))
    await desk.handled("telegram", await desk.telegram_message(ANA, "talk to a person please"))
    await desk.handled("sms", await desk.sms(ANA_PHONE, "https://example.com/" + "x" * 120))

    phone = await pages(width=390, height=844, is_mobile=True, has_touch=True, device_scale_factor=3)
    await sign_in(phone, desk, ADMIN, ADMIN_PASSWORD)
    await expect(phone.locator("#inbox li[data-status]")).to_have_count(1)  # Ana waits for a person
    await expect(phone.locator("#inbox li[data-channel]")).to_have_count(3)  # three conversations
    widths = await phone.evaluate(
        "({scroll: document.scrollingElement.scrollWidth, inner: window.innerWidth})"
    )
    assert widths["scroll"] <= widths["inner"], f"the inbox scrolls sideways on a phone: {widths}"
