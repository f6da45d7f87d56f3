"""Signed event webhooks to the business: what the hub does, told to its CRM, ticketing or analytics.

- ``record``: ``record_event(session, type, data)``, called inside the transaction that does what the
  event reports, writes one delivery row per endpoint subscribed to the type (durable like the outbox).
- ``endpoints``: the admin side: register (with a fresh ``whsec_`` secret, shown once), list, delete,
  the delivery log, and retrying a dead delivery.
- ``addresses``: where a receiver may be (SSRF): public addresses only unless ``events.allow_private``.
- ``signing``: the Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
- ``sender``: the lane that sends due deliveries, retried under the same ``webhook-id``, dead after bounded
  tries.

Durable like the outbox: an event is committed with what it reports (a crash before the commit leaves
neither) and stays queued until a receiver answered 2xx and that answer was recorded. The one repeat
window: a process killed after the receiver took a delivery and before ``sent`` was recorded; once its
claim lapses (``worker.lease_seconds``) the delivery is sent again, with the same ``webhook-id`` and body
(receivers drop repeats by the id, as the Standard Webhooks spec asks). Nothing else is sent twice
(``tests/test_crash_events.py`` kills the hub mid-stream and counts).
"""

from core.events.record import EVENT_TYPES, record_event

__all__ = ["EVENT_TYPES", "record_event"]
