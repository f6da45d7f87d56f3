"""The text of an email: a plain rendering of HTML, and the newest reply without quotes or signature.

``newest_reply`` runs mail-parser-reply (``mailparser_reply``), which splits a body at the reply
headers mail clients write ("On ... wrote:", Outlook's "From: / Sent:" block, "-----Original
Message-----") in several languages, and separates signatures ("-- ", "Best regards", "Sent from my
phone"). Hyphen lists are kept: the package would otherwise take "- item" lines for a signature.

``html_to_text`` is for HTML-only mail: block elements become line breaks and ``<blockquote>``
lines are prefixed with ``> `` like a plain-text quote; scripts, styles and the head are skipped.

Both run over text a sender controls, so both are bounded and linear. ``html_to_text`` reads at most
``MAX_HTML_CHARS`` with a tokenizer of its own that looks at every character a bounded number of times
(the standard library's ``html.parser`` rescans to the end of the input from every unclosed ``<a ``, and
quadratic time follows). mail-parser-reply's patterns backtrack quadratically over a run of blank lines
or spaces and cubically within a long line that starts like a reply header ("Am ... schrieb ..."), and
one ``findall`` holds the GIL for all of it, so ``newest_reply`` only hands the splitter lines it can
afford: the text is clipped to ``core.textlimits.MAX_TEXT_CHARS``, each line is stripped, runs of blank
lines and of spaces are shortened, a line over ``MAX_SPLIT_LINE_CHARS`` (never a reply header) is
swapped for a short placeholder and put back afterwards, and only the first ``MAX_SPLIT_CHARS`` are
searched for a reply header.
"""

from __future__ import annotations

import re
from html import unescape

from mailparser_reply import EmailMessage as ReplyMessage  # type: ignore[import-untyped]

from core.textlimits import MAX_TEXT_CHARS, clip_text

# Languages whose reply headers and signatures mail-parser-reply knows (English is always added).
REPLY_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs")
# The most of an HTML body that is rendered (markup is bulky: eight times the text bound).
MAX_HTML_CHARS = 8 * MAX_TEXT_CHARS
# What the reply splitter sees: the first 8,000 characters (the newest reply comes first), in lines of at
# most 200 characters (a reply header is one short line; longer lines are put aside and put back).
MAX_SPLIT_CHARS = 8_000
MAX_SPLIT_LINE_CHARS = 200

# Tags that end a line, and tags that also leave a blank line (a paragraph) around them.
_LINE_TAGS = frozenset({"div", "li", "tr", "dt", "dd"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "table", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "pre", "blockquote", "ul", "ol", "dl"}
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# for the reply splitter: a run of more than 8 blanks inside a line, and the placeholder of a long line
_LONG_BLANKS = re.compile(r"[^\S\n]{9,}")
_PLACEHOLDER = re.compile("\ue000([0-9]+)\ue001")


def newest_reply(text: str) -> str:
    """The newest reply in ``text``: quoted history and signature removed ("" if nothing is left).

    When the first ``MAX_SPLIT_CHARS`` hold no reply header but the text goes on, ``text`` (clipped) is
    the newest reply as it is: its signature, if any, is further on than the splitter looks.
    """
    text = clip_text(text)
    lines, put_aside = _splittable(text)
    window = "\n".join(lines)
    rest = ""
    if len(window) > MAX_SPLIT_CHARS:
        cut = window.rfind("\n", 0, MAX_SPLIT_CHARS)
        cut = cut if cut > 0 else MAX_SPLIT_CHARS
        window, rest = window[:cut], window[cut:].strip()
    message = ReplyMessage(text=window, languages=list(REPLY_LANGUAGES), keep_hyphen_lists=True)
    replies = message.read().replies
    if not replies:
        return ""
    if rest and len(replies) == 1:
        return text.strip()
    body = replies[0].body
    if not isinstance(body, str):
        return ""
    return _PLACEHOLDER.sub(lambda found: put_aside[int(found[1])], body).strip()


def _splittable(text: str) -> tuple[list[str], list[str]]:
    """``text`` as lines the splitter's patterns run over in linear time, and the long lines put aside.

    Lines are stripped (the splitter strips them too), runs of more than two blank lines become two,
    runs of more than eight blanks inside a line become one space, and a line longer than
    ``MAX_SPLIT_LINE_CHARS`` becomes a placeholder (``\\ue000<n>\\ue001``, characters no pattern of the
    splitter matches) for ``put_aside[n]``.
    """
    text = text.replace("\r\n", "\n").replace("\ue000", "\ufffd").replace("\ue001", "\ufffd")
    lines: list[str] = []
    put_aside: list[str] = []
    blank = 0
    for raw_line in text.split("\n"):
        line = raw_line.strip()
        if not line:
            blank += 1
            if blank <= 2:
                lines.append("")
            continue
        blank = 0
        if len(line) > MAX_SPLIT_LINE_CHARS:
            lines.append(f"\ue000{len(put_aside)}\ue001")
            put_aside.append(line)
        else:
            lines.append(_LONG_BLANKS.sub(" ", line))
    return lines, put_aside


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of an HTML body (its first ``MAX_HTML_CHARS``)."""
    renderer = _TextRenderer()
    _tokenize(html[:MAX_HTML_CHARS], renderer)
    return renderer.text()


# A tag's name, after "<" or "</"; the attributes of a start tag, as html.parser's tolerant pattern reads
# them, with the quantifiers possessive wherever nothing after them could need a shorter run (same
# matches; "=+" and the blanks after it may give back one character, for a bare value).
_TAG_NAME = re.compile(r"[A-Za-z][^\t\n\r\f />\x00]*+")
_TAG_ATTRIBUTES = re.compile(
    r"""(?:[\s/]*+(?:(?<=['"\s/])[^\s/>][^\s/=>]*+"""
    r"""(?:\s*+=+\s*(?:'[^']*+'|"[^"]*+"|(?!['"])[^>\s]*+)\s*+)?+(?:\s|/(?!>))*+)*+)?+\s*+"""
)
_COMMENT_END = re.compile(r"--\s*+>")
# after the attributes: the start tag is not over yet (html.parser waits for more input, then gives up)
_UNFINISHED = frozenset("abcdefghijklmnopqrstuvwxyz=/ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# a numeric character reference of eight digits or more: html.unescape would call int() on all of them
_LONG_CHARREF = re.compile(r"&#(?:([xX])([0-9a-fA-F]{8,}+)|([0-9]{8,}+));?")
# where the text of a script or style element ends
_RAW_TEXT_END = {
    "script": re.compile(r"</script[\s/>]", re.IGNORECASE),
    "style": re.compile(r"</style[\s/>]", re.IGNORECASE),
}


def _tokenize(html: str, renderer: _TextRenderer) -> None:
    """Feed ``renderer`` the start tags, end tags and text of ``html``, in linear time.

    What is not well formed is read the way ``html.parser`` reads it: a ``<`` that starts no tag is text,
    an unfinished start tag or comment is text up to the next ``>``, and text after the last ``>`` is
    text. Comments, declarations and processing
    instructions are skipped; so is the text of scripts and styles, up to their end tag (an unclosed
    script runs to the end).
    """
    end = len(html)
    last_close = html.rfind(">")
    unclosed_comments_from = end  # no "-- >" after this: a comment opened there never closes
    position = 0
    while position < end:
        opening = html.find("<", position)
        if opening < 0 or opening > last_close:  # no tag can close after this: the rest is text
            renderer.handle_data(_unescape(html[position:]))
            return
        if opening > position:
            renderer.handle_data(_unescape(html[position:opening]))
        position = opening
        if html.startswith("<!--", opening):
            close = _COMMENT_END.search(html, opening + 4) if opening < unclosed_comments_from else None
            if close is not None:
                position = close.end()
                continue
            unclosed_comments_from = min(unclosed_comments_from, opening)
            position = html.find(">", opening + 1) + 1  # never closed: text, up to the next ">"
            renderer.handle_data(_unescape(html[opening:position]))
            continue
        closing_tag = html.startswith("</", opening)
        name = _TAG_NAME.match(html, opening + (2 if closing_tag else 1))
        if name is None:
            if html.startswith(("<!", "</", "<?"), opening):  # a declaration, a bogus comment
                position = html.find(">", opening) + 1
            else:  # "a < b": text
                renderer.handle_data("<")
                position = opening + 1
            continue
        tag = name.group().lower()
        if closing_tag:
            position = html.find(">", name.end()) + 1
            renderer.handle_endtag(tag)
            continue
        attributes = _TAG_ATTRIBUTES.match(html, name.end())
        after = attributes.end() if attributes is not None else name.end()
        if html.startswith((">", "/>"), after):
            position = html.find(">", after) + 1
        elif after == end or html[after] in _UNFINISHED:  # unfinished: text up to the next ">"
            position = html.find(">", opening + 1) + 1
            renderer.handle_data(_unescape(html[opening:position]))
            continue
        else:  # bogus ("<a b='c'd"): the part read so far is text
            position = after
            renderer.handle_data(_unescape(html[opening:after]))
            continue
        renderer.handle_starttag(tag, [])
        raw_text_end = _RAW_TEXT_END.get(tag)
        if raw_text_end is not None and not html.startswith("/>", position - 2):
            found = raw_text_end.search(html, position)
            if found is None:
                return
            position = found.start()


def _unescape(text: str) -> str:
    """``html.unescape``, safe from a reference with thousands of digits (``int()`` refuses over 4,300)."""
    return unescape(_LONG_CHARREF.sub(_short_charref, text)) if "&#" in text else unescape(text)


def _short_charref(found: re.Match[str]) -> str:
    hexadecimal = found[1] is not None
    digits = (found[2] if hexadecimal else found[3]).lstrip("0")
    if len(digits) > 7:  # beyond U+10FFFF either way: what unescape gives for an invalid code point
        return "\ufffd"
    return f"&#{'x' if hexadecimal else ''}{digits or '0'};"


class _TextRenderer:
    def __init__(self) -> None:
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
