"""Whether an inbound email's sender is authenticated: DMARC pass in the one field our path wrote.

``extras["sender_authenticated"]`` (set by ``channels.email_parse.parse_email``) is ``True`` only when an
``Authentication-Results`` field that our own receiving path wrote, with our authserv-id
(``settings.authserv_id``), says ``dmarc=pass`` with ``header.from`` equal to the ``From`` domain
(``_dmarc_pass``). Anyone can write such a header into their own mail, so every field naming our id is
discarded before one is trusted (RFC 8601 §5), and which one (if any) may be trusted depends on how the
message reached us (``HeaderTrust``):

- ``NONE``: our SMTP listener received it from a peer that is not a trusted relay. The listener is then
  the border of our domain and checks nothing itself, so no field naming our id can be ours: none is
  trusted, the sender is unauthenticated.
- ``RELAY``: the listener received it from one of ``THREADLINE_EMAIL__TRUSTED_RELAYS``, our own MTA that
  checks DMARC and strips forged copies (RFC 8601 §5): its field, the topmost naming our id, is trusted.
- ``PROVIDER``: the signed inbound-parse webhook. The provider is the border; whatever the sender wrote
  sits below the ``Received`` trace field the provider's MTA prepended, so only a field above the first
  ``Received`` is the provider's; every field naming our id below it is discarded. A provider that writes
  no such field above its trace authenticates nobody (fail closed).

Fields of any other authserv-id are claims anyone can write and are always ignored.
"""

from __future__ import annotations

import enum
from email.message import EmailMessage
from typing import Any

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]

_AUTH_RESULTS = authres.FeatureContext(authres.dmarc, authres.arc)


class HeaderTrust(enum.Enum):
    """Which ``Authentication-Results`` field naming our authserv-id, if any, our receiving path wrote."""

    NONE = "none"
    RELAY = "relay"
    PROVIDER = "provider"


def _dmarc_pass(
    msg: EmailMessage, from_addr: str | None, authserv_id: str | None, trust: HeaderTrust
) -> bool:
    """DMARC pass, aligned with ``From``, in the one Authentication-Results field our path wrote."""
    if not authserv_id or from_addr is None or trust is HeaderTrust.NONE:
        return False
    ours = _our_results(msg, authserv_id.lower())
    if not ours:
        return False
    position, parsed = ours[0]  # the topmost field naming our id; every other one is discarded
    if parsed is None:
        return False  # unreadable: no pass
    if trust is HeaderTrust.PROVIDER:
        first_trace = next(
            (index for index, (name, _) in enumerate(msg.raw_items()) if name.lower() == "received"), None
        )
        if first_trace is None or position > first_trace:
            return False  # written by the sender, below the provider's trace (or no trace at all)
    from_domain = from_addr.rpartition("@")[2].lower()
    return any(
        result.method == "dmarc"
        and result.result == "pass"
        and any(
            prop.type == "header" and prop.name == "from" and str(prop.value).lower() == from_domain
            for prop in result.properties
        )
        for result in parsed.results
    )


def _our_results(msg: EmailMessage, authserv_id: str) -> list[tuple[int, Any | None]]:
    """Every Authentication-Results field that names ``authserv_id`` (readable or not), topmost first,
    with its position among the header fields. An unreadable one naming us still counts (None: no pass)."""
    found: list[tuple[int, Any | None]] = []
    for index, (name, value) in enumerate(msg.raw_items()):
        if name.lower() != "authentication-results":
            continue
        text = " ".join(str(value).split())
        try:
            parsed = _AUTH_RESULTS.parse_value(text)
        except authres.AuthResError:
            if text.split(";", 1)[0].strip().lower() == authserv_id:
                found.append((index, None))
            continue
        if str(parsed.authserv_id).lower() == authserv_id:
            found.append((index, parsed))
    return found
