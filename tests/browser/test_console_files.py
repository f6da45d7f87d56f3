"""An operator sends a file from the console in chromium: the real reply form, its file picker, the fake
Telegram receiving it (``sendDocument``, the same bytes) and the timeline showing it, without a reload.

A file the form must refuse (a program named ``.pdf``) is tried first: the page says why and nothing
reaches Telegram; back on the customer's page, the PDF goes out once.
"""

from __future__ import annotations

from typing import Any

from core.store.models import AttachmentRow
from tests.browser.support import AGENT, AGENT_PASSWORD, Desk, sign_in
from tests.browser.test_console import eventually

try:
    from playwright.async_api import expect
except ImportError:  # the ``browser`` fixture skips every test (fails under CI=true) and says why
    expect = None

ANA = 434343  # a Telegram user
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200
CAPTION = "Your corrected invoice"


async def test_an_operator_picks_a_pdf_in_the_reply_form_and_telegram_receives_it(
    desk: Desk, page: Any
) -> None:
    await desk.handled("telegram", await desk.telegram_message(ANA, "my invoice is wrong"))
    ana = await desk.customer_of(f"telegram:{ANA}")
    await sign_in(page, desk, AGENT, AGENT_PASSWORD)
    await page.goto(f"{desk.url}/console/customers/{ana}")
    files = page.get_by_label("Files")
    await expect(files).to_have_attribute("type", "file")

    # a program named .pdf: refused, said on the page, nothing sent or kept
    await page.get_by_label("Reply").fill(CAPTION)
    await files.set_input_files({"name": "setup.pdf", "mimeType": "application/pdf", "buffer": EXE})
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.get_by_role("alert")).to_contain_text("setup.pdf is a kind of file we do not accept")
    assert desk.telegram.sent_files == []
    async with desk.served.hub.db.read() as session:
        assert (await session.get(AttachmentRow, 1)) is None

    # back to the customer, the real PDF
    await page.get_by_role("link", name="Back to the customer").click()
    await page.wait_for_url(f"{desk.url}/console/customers/{ana}")
    await page.get_by_label("Reply").fill(CAPTION)
    await page.get_by_label("Files").set_input_files(
        {"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": PDF}
    )
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.get_by_role("status")).to_contain_text("Reply with 1 file queued on telegram.")
    await eventually(lambda: len(desk.telegram.sent_files) > 0, "the file reaches Telegram")
    left = await desk.served.hub.wait_idle(timeout=30)
    assert not left["outbox"], left
    assert [
        (f["method"], int(f["chat_id"]), f["filename"], f["caption"], f["data"])
        for f in desk.telegram.sent_files
    ] == [("sendDocument", ANA, "invoice.pdf", CAPTION, PDF)]

    # the timeline shows the file sent, a download link to it
    sent = page.locator('ol#timeline li[data-role="sent"]')
    await expect(sent.get_by_role("link", name="invoice.pdf")).to_be_visible()
    await expect(sent).to_contain_text("application/pdf")
