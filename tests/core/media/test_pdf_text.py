"""``core.media.pdf_text``: a PDF's text read within bounds; what cannot be read (broken, encrypted, out of
time) is None, never an error, so the file is still stored."""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter

from core.media.pdf_text import pdf_text
from tests.core.media.samples import pdf_with_text


def encrypted(data: bytes, password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_the_text_of_every_page_is_read() -> None:
    assert await pdf_text(pdf_with_text("Invoice 42", "Total 19.99", pages=2)) == (
        "Invoice 42 Total 19.99\nInvoice 42 Total 19.99"
    )


async def test_only_the_first_pages_and_characters_are_read() -> None:
    many = pdf_with_text("page text", pages=50)
    assert await pdf_text(many, max_pages=3) == "page text\npage text\npage text"
    long = pdf_with_text("x" * 90, pages=50)
    text = await pdf_text(long, max_chars=200)
    assert text is not None and len(text) == 200 and text.endswith("…")


async def test_broken_and_empty_pdfs_have_no_text() -> None:
    assert await pdf_text(b"%PDF-1.7\n" + bytes(range(256)) * 4) is None
    assert await pdf_text(b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n%%EOF\n") is None
    assert await pdf_text(pdf_with_text()) is None  # a page without text


async def test_an_encrypted_pdf_is_read_only_with_the_empty_password() -> None:
    plain = pdf_with_text("Secret invoice")
    assert await pdf_text(encrypted(plain, "")) == "Secret invoice"
    assert await pdf_text(encrypted(plain, "hunter2")) is None


async def test_out_of_time_gives_up() -> None:
    assert await pdf_text(pdf_with_text("slow", pages=5), deadline_seconds=0) is None
