"""The raw structure of a message, read before the standard library's parser (``_readable``).

The standard library's parser recurses once per level of nesting (3,000 levels: RecursionError), and
its header parsers take quadratic time in the length of one field (an address of unclosed quotes, a
Content-Type of thousands of ";": seconds for 16 KB, hours for a 10 MiB header), once per access. So
the raw message is read first, in linear time (``_readable``, called by ``channels.email_parse``): a
message nested deeper than MAX_MIME_DEPTH or with more than MAX_MIME_PARTS parts is refused (422, and 550
over SMTP: no retry reads it either), as is a header block with more than MAX_PARSED_FIELDS fields of the
kinds parsed at length (addresses, Content-*, Authentication-Results); a header field is cut to
MAX_HEADER_FIELD_CHARS (the line length limit of RFC 5322), a Content-Type or Content-Disposition to
MAX_PARAMETER_FIELD_CHARS and MAX_PARAMETERS parameters. What is cut is junk or an overlong file name;
the limits keep a crafted message to a few seconds of one worker thread (pure Python: the event loop
keeps running).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import BadRequest

MAX_MIME_DEPTH = 30
MAX_MIME_PARTS = 100
MAX_HEADER_FIELD_CHARS = 998
MAX_PARAMETER_FIELD_CHARS = 400
MAX_PARAMETERS = 30
MAX_PARSED_FIELDS = 50
_PARAMETER_FIELDS = frozenset({b"content-type", b"content-disposition"})
_PARSED_FIELDS = _PARAMETER_FIELDS | frozenset(
    {b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"authentication-results"}
    | {b"resent-from", b"resent-sender", b"resent-to", b"resent-cc", b"resent-bcc"}
)
# what feedparser takes for a header line (headerRE); anything else ends the header block
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*+:|[\t ]")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DASH_LINE = re.compile(rb"(?:\r\n|\r|\n)--")
_BOUNDARY = re.compile(rb"""boundary\s*+=\s*+(?:"([^"]*+)"|([^\s;"]++))""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Level:
    """An open multipart (its boundary, ``None`` when unreadable) or an enclosed message (``None``)."""

    boundary: bytes | None
    digest: bool = False


def _readable(raw: bytes) -> bytes:
    """``raw`` with over-long header fields cut; ``BadRequest`` when its structure is too big to parse.

    Read the way ``email.feedparser`` reads it: a line that is a boundary of an open multipart ends
    whatever was being read (headers included), a header block ends at a blank line or at a line that
    is no header, and a ``message/*`` part (but ``message/delivery-status``) encloses a message, with
    headers of its own, one level deeper (so does a part without Content-Type in a ``multipart/digest``).
    Bodies are skipped from one line starting with ``--`` to the next, and not read at all once no
    multipart is open.
    """
    levels: list[_Level] = []
    parts = 0
    in_headers, in_digest = True, False
    block: list[bytes] = []  # the header lines of the block being read, from block_start
    block_start = 0
    cuts: list[tuple[int, int, bytes]] = []  # (start, end, what replaces raw[start:end])
    position, size = 0, len(raw)
    while position < size:
        if not in_headers:
            if not levels:
                break
            if not raw.startswith(b"--", position):
                dashes = _DASH_LINE.search(raw, position)
                if dashes is None:
                    break
                position = dashes.end() - 2
        ending = _LINE_END.search(raw, position)
        end = ending.end() if ending is not None else size
        line = raw[position:end]
        boundary = _boundary_of(line, levels) if levels and line.startswith(b"--") else None
        if in_headers and boundary is None and line.strip(b"\r\n") and _HEADER_LINE.match(line):
            if not block:
                block_start = position
            block.append(line)
            position = end
            continue
        if in_headers:
            _cut_fields(block, block_start, cuts)
            in_headers = _open_level(block, levels, in_digest)
            in_digest, block = False, []
            # the blank line after a message/* part's headers: the enclosed message's own headers follow
            in_headers = in_headers and boundary is None and not line.strip(b"\r\n")
        if boundary is not None:
            index, closing = boundary
            if closing:
                del levels[index:]
            else:
                in_headers, in_digest = True, levels[index].digest
                del levels[index + 1 :]
                parts += 1
        if len(levels) > MAX_MIME_DEPTH:
            raise BadRequest(f"the message is nested more than {MAX_MIME_DEPTH} levels deep", status=422)
        if parts > MAX_MIME_PARTS:
            raise BadRequest(f"the message has more than {MAX_MIME_PARTS} parts", status=422)
        position = end
    _cut_fields(block, block_start, cuts)
    if not cuts:
        return raw
    pieces: list[bytes] = []
    done = 0
    for start, stop, replacement in cuts:
        pieces += (raw[done:start], replacement)
        done = stop
    pieces.append(raw[done:])
    return b"".join(pieces)


def _cut_fields(block: list[bytes], start: int, cuts: list[tuple[int, int, bytes]]) -> None:
    """Note in ``cuts`` the header ``block`` (at ``start`` in the raw message) with long fields cut."""
    kept = _fields_cut(block)
    if len(kept) != len(block) or any(a is not b for a, b in zip(kept, block, strict=True)):
        cuts.append((start, start + sum(map(len, block)), b"".join(kept)))


def _boundary_of(line: bytes, levels: list[_Level]) -> tuple[int, bool] | None:
    """Which open multipart ``line`` is a boundary of (innermost first), and whether it closes it."""
    mark = line.rstrip(b"\r\n").rstrip(b" \t")[2:]
    for index in range(len(levels) - 1, -1, -1):
        boundary = levels[index].boundary
        if boundary is None:
            continue
        if mark == boundary:
            return index, False
        if mark == boundary + b"--":
            return index, True
    return None


def _open_level(block: list[bytes], levels: list[_Level], in_digest: bool) -> bool:
    """Push what the header ``block`` opens onto ``levels``; whether a header block follows at once."""
    content_type = _field(block, b"content-type")
    if content_type is None:
        kind = b"message/rfc822" if in_digest else b"text/plain"
    else:
        kind = content_type.split(b";", 1)[0].strip().lower()
        kind = kind if kind.count(b"/") == 1 else b"text/plain"
    if kind.startswith(b"multipart/"):
        found = _BOUNDARY.search(content_type or b"")
        if found is not None:
            boundary = (found[1] if found[1] is not None else found[2]).rstrip()
            levels.append(_Level(boundary, digest=kind == b"multipart/digest"))
        elif b"boundary" in (content_type or b"").lower():  # written some other way (RFC 2231): count it
            levels.append(_Level(None))
        return False
    if kind.startswith(b"message/") and kind != b"message/delivery-status":
        levels.append(_Level(None))
        return True
    return False


def _field(block: list[bytes], name: bytes) -> bytes | None:
    """The value of the first field ``name`` in a header block, unfolded (as cut by ``_fields_cut``)."""
    for index, line in enumerate(block):
        if line[:1] not in (b" ", b"\t") and line.split(b":", 1)[0].lower() == name:
            folded = [line]
            for more in block[index + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                folded.append(more)
            unfolded = b"".join(part.rstrip(b"\r\n") for part in folded)[:MAX_HEADER_FIELD_CHARS]
            return unfolded.split(b":", 1)[1].lstrip(b" \t")
    return None


def _fields_cut(block: list[bytes]) -> list[bytes]:
    """The lines of a header block, every field cut to ``MAX_HEADER_FIELD_CHARS`` (and a Content-Type or
    Content-Disposition before its parameter ``MAX_PARAMETERS`` + 1); ``BadRequest`` when the block has
    more than ``MAX_PARSED_FIELDS`` fields that are parsed at length."""
    kept: list[bytes] = []
    room = 0  # characters the current field may still take
    semicolons = -1  # parameters it may still take (-1: any number)
    parsed = 0
    for line in block:
        if line[:1] not in (b" ", b"\t"):
            name = line.split(b":", 1)[0].strip().lower()
            if name in _PARAMETER_FIELDS:
                room, semicolons = MAX_PARAMETER_FIELD_CHARS, MAX_PARAMETERS
            else:
                room, semicolons = MAX_HEADER_FIELD_CHARS, -1
            if name in _PARSED_FIELDS:
                parsed += 1
        if room <= 0:
            continue
        text = line.rstrip(b"\r\n")
        keep = min(len(text), room)
        if semicolons >= 0 and text.count(b";", 0, keep) > semicolons:
            at = -1
            for _ in range(semicolons + 1):
                at = text.find(b";", at + 1)
            keep, room = at, 0
        elif semicolons >= 0:
            semicolons -= text.count(b";", 0, keep)
        kept.append(line if keep == len(text) else text[:keep] + line[len(text) :])
        room -= keep
    if parsed > MAX_PARSED_FIELDS:
        raise BadRequest(
            f"a header block has more than {MAX_PARSED_FIELDS} fields parsed at length", status=422
        )
    return kept
