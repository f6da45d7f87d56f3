"""One-time link codes: how they are made, how they are kept, and the limits on them.

A code is ``CODE_DIGITS`` random digits (``secrets``). Only its salted HMAC (``hash_code``) is stored;
the code itself is never logged. It lives ``CODE_TTL``, ``MAX_TRIES`` wrong answers lock its request,
and requests are rate limited per claimed handle and per customer over ``RATE_WINDOW``. The challenge
store that applies these is ``identity.challenges``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_TRIES = 5
RATE_WINDOW = timedelta(hours=1)
MAX_REQUESTS_PER_CLAIMED_HANDLE = 3
MAX_REQUESTS_PER_CUSTOMER = 5


def hash_code(code: str, salt: str) -> str:
    return hmac.new(salt.encode(), code.encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
