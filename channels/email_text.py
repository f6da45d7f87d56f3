"""The text of an email: a plain rendering of HTML, and the newest reply without quotes or signature.

``newest_reply`` runs mail-parser-reply (``mailparser_reply``), which splits a body at the reply
headers mail clients write ("On ... wrote:", Outlook's "From: / Sent:" block, "-----Original
Message-----") in several languages, and separates signatures ("-- ", "Best regards", "Sent from my
phone"). Hyphen lists are kept: the package would otherwise take "- item" lines for a signature.

``html_to_text`` is for HTML-only mail: block elements become line breaks and ``<blockquote>``
lines are prefixed with ``> `` like a plain-text quote; scripts, styles and the head are skipped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mailparser_reply import EmailMessage as ReplyMessage  # type: ignore[import-untyped]

# Languages whose reply headers and signatures mail-parser-reply knows (English is always added).
REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs")
# The reply splitter is regex-heavy: bodies beyond this are cut before stripping (the raw message
# is kept whole for audit).
MAX_TEXT_CHARS = 100_000

# Tags that end a line, and tags that also leave a blank line (a paragraph) around them.
_LINE_TAGS = frozenset({"div", "li", "tr", "dt", "dd"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre", "blockquote", "ul", "ol", "dl"}
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def newest_reply(text: str) -> str:
    """The newest reply in ``text``: quoted history and signature removed ("" if nothing is left)."""
    text = text[:MAX_TEXT_CHARS]
    message = ReplyMessage(text=text, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
    replies = message.read().replies
    if not replies:
        return ""
    body = replies[0].body
    return body.strip() if isinstance(body, str) else ""


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of an HTML body."""
    renderer = _TextRenderer()
    renderer.feed(html[: MAX_TEXT_CHARS * 4])
    renderer.close()
    return renderer.text()


class _TextRenderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._lines: list[str] = []
        self._current: list[str] = []
        self._skip = 0
        self._quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "br":
            self._end_line(keep_empty=True)
        elif tag in _LINE_TAGS or tag in _PARAGRAPH_TAGS:
            self._end_line(paragraph=tag in _PARAGRAPH_TAGS)
            if tag == "blockquote":
                self._quote += 1
            elif tag == "li":
                self._current.append("- ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "blockquote":
            self._end_line()
            self._quote = max(0, self._quote - 1)
            self._end_line(paragraph=True)
        elif tag in _LINE_TAGS or tag in _PARAGRAPH_TAGS:
            self._end_line(paragraph=tag in _PARAGRAPH_TAGS)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._current.append(_SPACES.sub(" ", data.replace("\n", " ")))

    def _end_line(self, *, keep_empty: bool = False, paragraph: bool = False) -> None:
        line = "".join(self._current).strip()
        self._current = []
        prefix = "> " * self._quote
        if line or keep_empty:
            self._lines.append(f"{prefix}{line}".rstrip())
        if paragraph and self._lines and self._lines[-1].strip("> "):
            self._lines.append(prefix.rstrip())

    def text(self) -> str:
        self._end_line()
        joined = "\n".join(line.rstrip() for line in self._lines).strip()
        return _BLANK_LINES.sub("\n\n", joined)
