"""Signed event webhooks to the business: what the hub does, told to its CRM, ticketing or analytics.

- ``record``: ``record_event(session, type, data)``, called inside the transaction that does what the
  event reports, writes one delivery row per endpoint subscribed to the type (durable like the outbox).
- ``endpoints``: the admin side: register (with a fresh ``whsec_`` secret, shown once), list, delete,
  the delivery log, and retrying a dead delivery.
- ``addresses``: where a receiver may be (SSRF): public addresses only unless ``events.allow_private``.
- ``signing``: the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
- ``sender``: the lane that sends due deliveries, retried under the same ``webhook-id``, dead after bounded
  tries.
"""

from core.events.record import EVENT_TYPES, record_event

__all__ = ["EVENT_TYPES", "record_event"]
