"""Normalise handles to canonical addresses.

- phones: E.164 through ``phonenumbers``; a number without ``+`` is read in the default region,
  and prefixes such as ``whatsapp:`` / ``tel:`` are stripped deliberately;
- emails: ``email_validator`` (no DNS look-up); the domain is lowercased, and so is the local part:
  Threadline treats local parts case-insensitively (RFC 5321 lets a server differ; none of the large
  providers do). Gmail dots and ``+tags`` are *not* folded: such variants are at most a hint to an admin;
- Slack: ``slack:TEAM:USER`` (user ids are per workspace);
- Telegram: ``telegram:<numeric from.id>``;
- console: ``console:<name>`` for the local REPL.
"""

from __future__ import annotations

import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from core.errors import InvalidAddress
from core.messages import Address

_PHONE_PREFIXES = ("whatsapp:", "tel:", "sms:")
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")
_TELEGRAM_ID = re.compile(r"^-?[0-9]{1,20}$")
_CONSOLE_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """E.164 form of a phone number, or ``InvalidAddress``."""
    text = raw.strip()
    lowered = text.lower()
    for prefix in _PHONE_PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress("not a phone number") from exc
    # "possible" (right length for the country), not "valid": allocation data changes over time,
    # and numbers such as +1 555 01xx used in testing and fiction must still be accepted.
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress("not a possible phone number")
    formatted: str = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return formatted


def international_phone(raw: str) -> str:
    """E.164 form of a number a platform gives in international form, with or without its ``+``
    (Telegram's shared contacts): never read in a default region. ``InvalidAddress`` otherwise."""
    digits = raw.strip()
    if not digits.startswith("+"):
        digits = "+" + digits
    return normalize_phone(digits)


def normalize_email(raw: str) -> str:
    """Normalised email address (lowercase), or ``InvalidAddress``."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress("not a valid email address") from exc
    return result.normalized.lower()


def normalize_slack(raw: str) -> str:
    """``TEAM:USER`` with both ids upper-case, or ``InvalidAddress``."""
    team, sep, user = raw.strip().partition(":")
    if not sep or not _SLACK_ID.match(team.upper()) or not _SLACK_ID.match(user.upper()):
        raise InvalidAddress("a Slack handle is TEAM_ID:USER_ID")
    return f"{team.upper()}:{user.upper()}"


def normalize_telegram(raw: str) -> str:
    """The numeric Telegram user id, or ``InvalidAddress``. Usernames change, so they are refused."""
    text = raw.strip()
    if not _TELEGRAM_ID.match(text):
        raise InvalidAddress("a Telegram handle is the numeric user id")
    return str(int(text))


def normalize_console(raw: str) -> str:
    text = raw.strip()
    if not _CONSOLE_NAME.match(text):
        raise InvalidAddress("a console handle is a short name")
    return text


# The channels whose handles are a kind of address that exists outside any one platform: a phone number
# (SMS) and an email address. Only this module names them; the rest of identity asks these functions.
PHONE_CHANNEL = "sms"
EMAIL_CHANNEL = "email"


def is_phone(address: Address) -> bool:
    """``address`` is a phone number (E.164)."""
    return address.channel == PHONE_CHANNEL


def is_email(address: Address) -> bool:
    """``address`` is an email address."""
    return address.channel == EMAIL_CHANNEL


def normalize_address(text: str, *, default_region: str = "US") -> Address:
    """Parse and normalise ``channel:handle`` (``sms:+1 555 123 0000`` → ``sms:+15551230000``).

    A bare email address or a bare ``+`` phone number is accepted too.
    """
    stripped = text.strip()
    channel, sep, handle = stripped.partition(":")
    channel = channel.lower()
    if not sep or channel not in _NORMALIZERS:
        if "@" in stripped and ":" not in stripped:
            return Address(channel=EMAIL_CHANNEL, handle=normalize_email(stripped))
        if stripped.startswith("+"):
            return Address(channel=PHONE_CHANNEL, handle=normalize_phone(stripped, default_region))
        raise InvalidAddress("an address is written channel:handle (sms, email, telegram, slack, console)")
    if channel == PHONE_CHANNEL:
        return Address(channel=PHONE_CHANNEL, handle=normalize_phone(handle, default_region))
    return Address(channel=channel, handle=_NORMALIZERS[channel](handle))


_NORMALIZERS = {
    "sms": normalize_phone,
    "email": normalize_email,
    "slack": normalize_slack,
    "telegram": normalize_telegram,
    "console": normalize_console,
}
