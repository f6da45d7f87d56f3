"""Threadline's one exception tree.

::

    ThreadlineError
    ├── ConfigError                 settings are missing, partial or inconsistent; names the setting
    ├── AlreadyServing              another process serves this SQLite data dir; ``pid`` names it
    ├── InvalidAddress              a handle that cannot be normalised (bad phone, email, ...)
    ├── VerificationFailed          an inbound request failed its signature / secret check
    ├── BadRequest                  an inbound request could not be parsed
    ├── DeliveryError               sending a reply failed
    │   ├── TransientDeliveryError  worth retrying; ``retry_after`` (seconds) when the platform said
    │   └── PermanentDeliveryError  never retried (blocked by user, opted out, unknown chat)
    ├── LLMError                    the language model failed, timed out or answered garbage
    ├── MemoryUnavailable           the memory backend failed; the write is queued and retried
    ├── StoreError                  the database failed in a way the caller should see
    │   └── ClaimLost               this process no longer holds the row it works on (a lapsed lease)
    └── IdentityError               an admin change (identity, dead-letter retry) that cannot be made
        ├── NotFound                no such customer, address, ledger entry or reply (HTTP 404)
        └── Conflict                the change contradicts the current state (HTTP 409)

Errors carry what the caller acts on (``retry_after``, ``setting``), never secrets or message text.
"""

from __future__ import annotations


class ThreadlineError(Exception):
    """Root of every error Threadline raises on purpose."""


class ConfigError(ThreadlineError):
    """Configuration that must stop start-up. ``setting`` names the environment variable at fault."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class AlreadyServing(ThreadlineError):
    """Another ``threadline serve`` holds this data dir (SQLite has one serving process). ``pid`` is its
    process id, when it wrote one."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class InvalidAddress(ThreadlineError, ValueError):
    """A handle that cannot be normalised."""


class VerificationFailed(ThreadlineError):
    """An inbound request failed authentication. ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class BadRequest(ThreadlineError):
    """An inbound request that is authentic but cannot be parsed. ``status`` is 4xx."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class DeliveryError(ThreadlineError):
    """Sending a reply failed. ``sent_ids`` are the platform ids of the parts that did go out first."""

    def __init__(self, message: str, *, sent_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.sent_ids = sent_ids


class TransientDeliveryError(DeliveryError):
    """A failure worth retrying. ``retry_after`` is the platform's requested wait, if it gave one."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, sent_ids: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, sent_ids=sent_ids)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """A failure that no retry can fix (blocked, opted out, unknown chat); never retried."""


class LLMError(ThreadlineError):
    """The language model failed, timed out, or answered something unusable."""


class MemoryUnavailable(ThreadlineError):
    """The memory backend failed; callers answer without memory and queue the write."""


class StoreError(ThreadlineError):
    """A database failure the caller must see."""


class IdentityError(ThreadlineError):
    """An identity change (link, unlink, merge, unmerge) that cannot be made; nothing was changed."""


class NotFound(IdentityError):
    """No such customer, address or ledger entry."""


class Conflict(IdentityError):
    """The change contradicts the current state (merging a customer into itself, undoing twice, ...)."""


class ClaimLost(StoreError):
    """The lease on the row this work is for was taken over by another process (``core.store.leases``):
    whatever this process was about to write is not written."""


class MediaRefused(ThreadlineError):
    """A file is not taken (too large, a type not allowed, a URL on a host that is not the platform's, a
    fetch the platform refused for good). The message is the reason, safe to show the customer: no
    secret, no URL."""


class MediaUnavailable(ThreadlineError):
    """A file could not be fetched for now (the platform unreachable, a 5xx): the turn is tried again."""
