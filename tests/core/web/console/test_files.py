"""A customer's files in the console, over HTTP: the timeline shows each turn's files (name, type, size, or
why one was refused) and what an operator sent; a stored file downloads for a signed-in operator only, only
under its own customer, as an attachment that the browser will not sniff or render."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from sqlalchemy import select

from core.media.store import digest_of
from core.store.models import AttachmentRow, InboxRow, OperatorAction, utcnow
from core.web.console.auth import SESSION_COOKIE
from tests.apphost import Served
from tests.core.media.samples import pdf_with_text, png
from tests.core.web.console.conftest import Browser, conversation, count, services

PDF = pdf_with_text("Invoice 42")
PHOTO = png(2, 2, seed=3)


async def with_files(
    served: Served, address: str, *files: tuple[str, str, bytes | None]
) -> tuple[str, list[int]]:
    """A customer on ``address`` whose message came with ``files`` (name, type, bytes; None: refused)."""
    customer_id = await conversation(served, address, ("customer", "see attached"), ("assistant", "thanks"))
    svc = services(served)
    ids: list[int] = []
    async with svc.db.session() as session:
        inbox_id = await session.scalar(select(InboxRow.id).where(InboxRow.sender == address))
        for position, (name, media_type, data) in enumerate(files):
            sha256 = await svc.media.put(data) if data is not None else None
            row = AttachmentRow(
                customer_id=customer_id,
                inbox_id=inbox_id,
                position=position,
                direction="in",
                channel=address.split(":", 1)[0],
                name=name,
                media_type=media_type,
                size=len(data) if data is not None else 20_000,
                sha256=sha256,
                status="stored" if data is not None else "refused",
                reason=None if data is not None else f"{name} is a kind of file we do not accept",
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            ids.append(row.id)
    return customer_id, ids


async def test_the_timeline_shows_each_turn_s_files(served: Served, agent: Browser) -> None:
    customer_id, (pdf_id, _, _) = await with_files(
        served,
        "telegram:11",
        ("invoice.pdf", "application/pdf", PDF),
        ("<script>.png", "image/png", PHOTO),
        ("setup.exe", "application/x-msdownload", None),
    )
    page = await agent.get(f"/console/customers/{customer_id}")
    assert page.status_code == 200
    turn = page.text.split('data-role="customer"', 1)[1].split("</ul>", 1)[0]
    assert f'href="/console/customers/{customer_id}/files/{pdf_id}" download>invoice.pdf</a>' in turn
    assert "(application/pdf, 1 KB)" in turn
    assert "&lt;script&gt;.png" in turn and "<script>.png" not in page.text  # escaped
    assert 'setup.exe <span class="muted">refused: setup.exe is a kind of file we do not accept' in turn
    fragment = await agent.get(f"/console/customers/{customer_id}/timeline")
    assert fragment.status_code == 200 and f"/files/{pdf_id}" in fragment.text


async def test_files_an_operator_sent_are_shown_where_they_were_sent(served: Served, agent: Browser) -> None:
    customer_id = await conversation(served, "telegram:12", ("customer", "hi"))
    svc = services(served)
    async with svc.db.session() as session:
        session.add(
            AttachmentRow(
                customer_id=customer_id,
                outbox_id=999,
                position=0,
                direction="out",
                channel="telegram",
                name="manual.pdf",
                media_type="application/pdf",
                size=len(PDF),
                sha256=await svc.media.put(PDF),
                status="stored",
                created_at=utcnow(),
            )
        )
    page = await agent.get(f"/console/customers/{customer_id}")
    sent = page.text.split('data-role="sent"', 1)[1].split("</ul>", 1)[0]
    assert "files sent" in sent and ">manual.pdf</a>" in sent


async def test_an_operator_downloads_a_file_as_an_attachment(served: Served, agent: Browser) -> None:
    customer_id, (pdf_id, photo_id) = await with_files(
        served, "telegram:13", ("invoice.pdf", "application/pdf", PDF), ('Grüße "x".png', "image/png", PHOTO)
    )
    response = await agent.get(f"/console/customers/{customer_id}/files/{pdf_id}")
    assert response.status_code == 200 and response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith('attachment; filename="invoice.pdf"')
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    # a name with quotes and non-ASCII letters: a safe fallback, the exact name as filename*
    response = await agent.get(f"/console/customers/{customer_id}/files/{photo_id}")
    assert response.content == PHOTO
    disposition = response.headers["content-disposition"]
    assert disposition == (
        "attachment; filename=\"Gr__e _x_.png\"; filename*=UTF-8''" + quote('Grüße "x".png', safe="")
    )
    assert await count(served, OperatorAction, OperatorAction.action == "file") == 2


async def test_a_file_downloads_only_under_its_own_customer_and_while_kept(
    served: Served, agent: Browser
) -> None:
    ana, (ana_pdf, refused) = await with_files(
        served,
        "telegram:14",
        ("invoice.pdf", "application/pdf", PDF),
        ("x.exe", "application/x-msdownload", None),
    )
    bob, (bob_photo,) = await with_files(served, "telegram:15", ("photo.png", "image/png", PHOTO))
    # another customer's file id under this customer's path; a refused file; no such id; no such customer
    for path in (
        f"/console/customers/{ana}/files/{bob_photo}",
        f"/console/customers/{ana}/files/{refused}",
        f"/console/customers/{ana}/files/987654",
        f"/console/customers/cus_nobody/files/{ana_pdf}",
    ):
        response = await agent.get(path)
        assert response.status_code == 404, path
        assert PHOTO not in response.content and PDF not in response.content
    assert (await agent.get(f"/console/customers/{ana}/files/not-a-number")).status_code == 422
    # the bytes gone from the store (forgotten since): not found, never a server error
    await services(served).media.delete(digest_of(PDF))
    assert (await agent.get(f"/console/customers/{ana}/files/{ana_pdf}")).status_code == 404
    assert (await agent.get(f"/console/customers/{bob}/files/{bob_photo}")).content == PHOTO


async def test_no_session_no_file(served: Served, browser: Callable[[], Browser]) -> None:
    customer_id, (pdf_id,) = await with_files(served, "telegram:16", ("invoice.pdf", "application/pdf", PDF))
    stranger = browser()
    response = await stranger.client.get(f"/console/customers/{customer_id}/files/{pdf_id}")
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert PDF not in response.content
    stranger.client.cookies.set(SESSION_COOKIE, "forged-session-value")
    forged = await stranger.client.get(f"/console/customers/{customer_id}/files/{pdf_id}")
    assert forged.status_code == 303 and PDF not in forged.content
