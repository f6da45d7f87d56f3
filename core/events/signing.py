"""The Standard Webhooks signature (https://www.standardwebhooks.com): the headers of one attempt.

Signed with the ``standardwebhooks`` package (the spec's own reference library): ``webhook-signature`` is
``v1,`` and the base64 HMAC-SHA256, under the secret's decoded bytes, of ``{id}.{timestamp}.{body}``. The
timestamp is the attempt's (so a receiver's replay window holds on a retry); the id is the delivery's,
the same on every attempt. A secret is ``whsec_`` and 32 random bytes in base64.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from math import floor

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix every such secret has, not a secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret: str, msg_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent as ``msg_id`` at ``at``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }
