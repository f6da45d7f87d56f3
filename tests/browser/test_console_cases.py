"""Support cases in the console, in chromium: an agent opens cases and resolves them, telling the customer
(the rating question with its buttons reaches Telegram) or not (nothing is sent).

The customer writes through the signed Telegram webhook; the agent works in a real browser; the fake
Telegram records what the bot sends through the official SDK.
"""

from __future__ import annotations

from typing import Any

from core.pipeline.case_desk import OPERATOR_LABEL
from core.pipeline.cases import RATING_QUESTION, list_cases
from tests.browser.support import AGENT, AGENT_PASSWORD, Desk, sign_in
from tests.browser.test_console import eventually

try:
    from playwright.async_api import expect
except ImportError:  # the ``browser`` fixture skips every test (fails under CI=true) and says why
    expect = None

ANA = 434343


async def test_an_agent_opens_cases_and_resolves_them_telling_the_customer_or_not(
    desk: Desk, page: Any
) -> None:
    key = await desk.telegram_message(ANA, "hi, my parcel from last week is not here")
    await desk.handled("telegram", key)
    ana = await desk.customer_of(f"telegram:{ANA}")
    told_before = len(desk.telegram_texts(ANA))

    await sign_in(page, desk, AGENT, AGENT_PASSWORD)  # an agent may open and resolve cases
    await page.goto(f"{desk.url}/console/customers/{ana}")
    await expect(page.locator("#cases")).to_contain_text("No cases.")

    # open two cases from the form
    for number, title in ((1, "Parcel never arrived"), (2, "Wants a callback about the invoice")):
        await page.get_by_label("Open a case").fill(title)
        await page.get_by_role("button", name="Open case").click()
        await expect(page.get_by_text(f"Case #{number} is open.")).to_be_visible()
        opened = page.locator(f"li#case-{number}")
        await expect(opened).to_have_attribute("data-status", "open")
        await expect(opened).to_contain_text(title)
        await expect(opened).to_contain_text(f"by operator:{AGENT} on telegram")
    assert len(desk.telegram_texts(ANA)) == told_before  # opening tells nobody
    first = page.locator("li#case-1")

    # resolve #1, telling the customer (checked by default): the question and its buttons reach Telegram
    await first.get_by_label("How was case #1 resolved?").fill("Sent a replacement parcel by courier")
    assert await first.get_by_label("Tell the customer and ask for a rating").is_checked()
    await first.get_by_role("button", name="Resolve case #1").click()
    await expect(page.get_by_text("The customer was told on telegram")).to_be_visible()
    await expect(page.locator("li#case-1")).to_have_attribute("data-status", "resolved")
    await eventually(
        lambda: len(desk.telegram_texts(ANA)) == told_before + 1, "the resolution reaches Telegram"
    )
    assert desk.telegram_texts(ANA)[-1] == f"Case #1 is resolved. {RATING_QUESTION}"
    [question] = [c for c in desk.telegram.calls_to("sendMessage") if "Case #1 is resolved" in c["text"]]
    assert "rate:1:5" in str(question["reply_markup"])

    # resolve #2 without telling: nothing more is sent
    second = page.locator("li#case-2")
    await second.get_by_label("How was case #2 resolved?").fill("Called back, the invoice is right")
    await second.get_by_label("Tell the customer and ask for a rating").uncheck()
    await second.get_by_role("button", name="Resolve case #2").click()
    await expect(page.get_by_text("Case #2 is resolved.")).to_be_visible()
    await expect(page.locator("li#case-2")).to_have_attribute("data-status", "resolved")
    await expect(page.locator("li#case-2 form")).to_have_count(0)  # nothing left to resolve
    left = await desk.served.hub.wait_idle(timeout=30)
    assert not left["outbox"] and not left["memory"], left
    assert len(desk.telegram_texts(ANA)) == told_before + 1

    cases = {c.id: c for c in await list_cases(desk.served.hub.db, ana)}
    assert (cases[1].resolved_by, cases[2].resolved_by) == (f"{OPERATOR_LABEL}:{AGENT}",) * 2
    assert (cases[1].opened_by, cases[2].opened_by) == (f"{OPERATOR_LABEL}:{AGENT}",) * 2
    summaries = sorted(
        m.text for m in await desk.served.hub.memory.list(ana) if m.metadata.get("case_id") in (1, 2)
    )
    assert [s.split(": ", 1)[1] for s in summaries] == [
        "Sent a replacement parcel by courier",
        "Called back, the invoice is right",
    ]
