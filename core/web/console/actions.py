"""The console's actions (POST): take over, hand back, reply; and, for admins, link, unlink, merge, undo a
merge, forget and retry a dead letter.

Each is the same thin glue: signed in and the session's CSRF token (``Console.posted``), the role
(``require_admin``), the form read, one service call, a 303 back to the page with a message shown once.
Every action is attributed to the operator: identity changes reach the identity ledger with the actor
``operator:<name>``, the handoff service records its own actions, and the rest are recorded here
(``record_action``). A service's refusal (``NotFound``, ``Conflict``, ``ValueError``) is a page with its
message (``core.web.console.render.ConsoleRoute``), and nothing was changed.

The reply takes files (``multipart/form-data``, the file input ``files``): each checked as the admin API
checks them (``core.media.outbound.check_outgoing``: the sniffed type on the allowlist, the size, the
count, a name without a path), before anything is kept; a refused one is a 422 page naming the file and
the problem, and nothing is stored or sent. The form's hidden ``key`` (one per page view) is the reply's
idempotency key, files or not: a double submit sends one message. The route's body limit
(``reply_body_limit``, for ``REPLY_PATH`` in ``core.web.guard``) fits ``__MAX_BYTES`` of files.
"""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData, UploadFile

from core.compose import Services
from core.errors import MediaRefused
from core.media.outbound import check_outgoing
from core.pipeline.dead_letters import retry_dead_letter
from core.pipeline.handoff import MAX_REPLY_CHARS, record_action
from core.settings import AttachmentSettings
from core.store.operators import SignedIn
from core.web.console.auth import Console, require_admin, text_field
from core.web.console.render import BASE, Problem, redirect
from identity.directory import find_customer
from identity.erasure import forget
from identity.normalize import normalize_address

log = logging.getLogger(__name__)

_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9_-]{1,40}$")
MAX_BIGINT = 2**63 - 1
# the reply's text as a multipart part: MAX_REPLY_CHARS characters of up to 4 UTF-8 bytes
MAX_TEXT_PART = 4 * MAX_REPLY_CHARS

# a reply carries files (multipart): its body may be larger than the console's 64 KiB (core.web.guard)
REPLY_PATH = re.compile(rf"{BASE}/customers/[^/]+/reply")
_REPLY_OVERHEAD = 64 * 1024  # the text, the CSRF token, the key, each part's headers


def reply_body_limit(settings: AttachmentSettings) -> int:
    """The body limit of ``REPLY_PATH``: ``max_bytes`` of files (all of them together; multipart sends the
    bytes as they are) and the rest of the form."""
    return settings.max_bytes + _REPLY_OVERHEAD


async def _uploads(form: FormData) -> list[tuple[str | None, bytes]]:
    """The form's files as ``(name, bytes)``; the part an empty file input sends (no name, no bytes) is
    not a file. Read whole: the body they came in is bounded by ``reply_body_limit``."""
    files: list[tuple[str | None, bytes]] = []
    for value in form.getlist("files"):
        if isinstance(value, UploadFile):
            data = await value.read()
            if value.filename or data:
                files.append((value.filename or None, data))
        elif value:  # a text field named "files": not a file picked in the form
            raise Problem(422, "The field files must be files.")
    return files


def _page_of(customer_id: str) -> str:
    return f"{BASE}/customers/{customer_id}"


def _back(form: FormData, fallback: str) -> str:
    """The customer page to return to: the form's ``back`` when it is a customer id, else ``fallback``."""
    back = form.get("back")
    if isinstance(back, str) and _CUSTOMER_ID.match(back):
        return _page_of(back)
    return _page_of(fallback)


async def _named(svc: Services, who: str) -> str:
    return await find_customer(svc.db, who, default_region=svc.default_region)


async def _record(
    svc: Services, me: SignedIn, action: str, *, customer_id: str | None, subject: str | None = None
) -> None:
    async with svc.db.session() as session:
        await record_action(
            session, operator=me.operator.name, action=action, customer_id=customer_id, subject=subject
        )


def add_action_routes(router: APIRouter, console: Console) -> None:
    def done(to: str, message: str) -> Response:
        return redirect(to, flash=message, secure=console.secure)

    # ----- handoffs: agents and admins -----------------------------------------------------------

    @router.post(f"{BASE}/customers/{{ref}}/take")
    async def take(request: Request, ref: str) -> Response:
        me, _ = await console.posted(request)
        svc = console.svc()
        customer_id = await _named(svc, ref)
        await svc.handoffs.take(customer_id, operator=me.operator.name)
        return done(_page_of(customer_id), "You own this conversation now: the bot stays silent.")

    @router.post(f"{BASE}/customers/{{ref}}/hand-back")
    async def hand_back(request: Request, ref: str) -> Response:
        me, _ = await console.posted(request)
        svc = console.svc()
        customer_id = await _named(svc, ref)
        await svc.handoffs.hand_back(customer_id, operator=me.operator.name)
        return done(_page_of(customer_id), "Handed back to the bot.")

    @router.post(f"{BASE}/customers/{{ref}}/reply")
    async def reply(request: Request, ref: str) -> Response:
        settings = console.settings.attachments
        # an empty file input is sent as one nameless file part: it counts, so at least one is read
        me, form = await console.posted(
            request, max_files=max(1, settings.max_per_message), max_part_size=MAX_TEXT_PART
        )
        try:
            files = await _uploads(form)
            text = text_field(form, "text", required=not files, limit=MAX_REPLY_CHARS)
            key = text_field(form, "key", required=False, limit=64) or None
            svc = console.svc()
            # a forgotten customer's id names nobody: "no customer ..." (404), and nothing is stored
            customer_id = await _named(svc, ref)
            try:
                checked = check_outgoing(files, settings)
            except MediaRefused as exc:
                log.info("console: a reply's file refused for operator %s", me.operator.id)
                raise Problem(422, f"Not sent: {exc}.", back=_page_of(customer_id)) from None
            sent = await svc.handoffs.reply(
                customer_id,
                text=text,
                operator=me.operator.name,
                key=key,
                files=checked,
                store=svc.media if checked else None,
            )
        finally:
            await form.close()  # the uploads' spooled temporary files
        if sent.duplicate:
            return done(_page_of(sent.customer_id), "That reply was sent already (it goes out once).")
        shown = f" with {len(checked)} file{'s' if len(checked) != 1 else ''}" if checked else ""
        return done(_page_of(sent.customer_id), f"Reply{shown} queued on {sent.channel}.")

    # ----- identity, erasure, dead letters: admins --------------------------------------------------

    @router.post(f"{BASE}/customers/{{ref}}/forget")
    async def forget_customer(request: Request, ref: str) -> Response:
        me, form = await console.posted(request)
        require_admin(me, "forget a customer")
        svc = console.svc()
        customer_id = await _named(svc, ref)
        if text_field(form, "confirm", required=False, limit=64) != customer_id:
            raise Problem(422, "The customer id you typed does not match: nothing was forgotten.")
        receipt = await forget(svc.db, svc.memory, customer_id, actor=me.operator.actor, media=svc.media)
        await _record(svc, me, "forget", customer_id=customer_id, subject=_subject(receipt.ledger_event_id))
        log.info("console: operator %s forgot customer %s", me.operator.id, customer_id)
        return done(f"{BASE}/", f"Customer {customer_id} was forgotten everywhere.")

    @router.post(f"{BASE}/merge")
    async def merge(request: Request) -> Response:
        me, form = await console.posted(request)
        require_admin(me, "merge customers")
        source_ref, target_ref = text_field(form, "source", limit=320), text_field(form, "target", limit=320)
        reason = text_field(form, "reason", required=False, limit=500) or None
        svc = console.svc()
        source, target = await _named(svc, source_ref), await _named(svc, target_ref)
        change = await svc.links.merge(source, target, actor=me.operator.actor, reason=reason)
        assert change.event_id is not None  # a merge always writes its ledger entry
        await _record(svc, me, "merge", customer_id=target, subject=str(change.event_id))
        log.info("console merge: ledger %s, %s into %s", change.event_id, source, target)
        return done(_page_of(target), f"Merged {source} into {target} (merge {change.event_id}).")

    @router.post(f"{BASE}/merges/{{merge_id}}/undo")
    async def undo_merge(request: Request, merge_id: int) -> Response:
        me, form = await console.posted(request)
        require_admin(me, "undo a merge")
        if not 0 < merge_id <= MAX_BIGINT:
            raise Problem(404, f"no merge {merge_id}")
        reason = text_field(form, "reason", required=False, limit=500) or None
        svc = console.svc()
        change = await svc.links.unmerge(merge_id, actor=me.operator.actor, reason=reason)
        await _record(svc, me, "undo_merge", customer_id=change.customer_id, subject=str(merge_id))
        log.info("console unmerge: ledger %s undoes %s", change.event_id, merge_id)
        return done(
            _back(form, change.customer_id), f"Merge {merge_id} undone: {change.customer_id} is apart again."
        )

    @router.post(f"{BASE}/identities/link")
    async def link(request: Request) -> Response:
        me, form = await console.posted(request)
        require_admin(me, "link a handle")
        address, who = text_field(form, "address", limit=320), text_field(form, "customer_id", limit=320)
        reason = text_field(form, "reason", required=False, limit=500) or None
        svc = console.svc()
        handle = normalize_address(address, default_region=svc.default_region)
        customer_id = await _named(svc, who)
        change = await svc.links.link(handle, customer_id, actor=me.operator.actor, reason=reason)
        await _record(svc, me, "link", customer_id=change.customer_id, subject=_subject(change.event_id))
        log.info("console link: ledger %s, customer %s", change.event_id, change.customer_id)
        return done(_page_of(change.customer_id), "The handle is linked to this customer.")

    @router.post(f"{BASE}/identities/unlink")
    async def unlink(request: Request) -> Response:
        me, form = await console.posted(request)
        require_admin(me, "unlink a handle")
        address = text_field(form, "address", limit=320)
        reason = text_field(form, "reason", required=False, limit=500) or None
        svc = console.svc()
        handle = normalize_address(address, default_region=svc.default_region)
        change = await svc.links.unlink(handle, actor=me.operator.actor, reason=reason)
        left = change.from_customer_id or change.customer_id
        await _record(svc, me, "unlink", customer_id=left, subject=_subject(change.event_id))
        log.info("console unlink: ledger %s, new customer %s", change.event_id, change.customer_id)
        return done(
            _back(form, change.customer_id),
            f"The handle was unlinked: it is customer {change.customer_id} now.",
        )

    @router.post(f"{BASE}/dead-letters/{{outbox_id}}/retry")
    async def retry(request: Request, outbox_id: int) -> Response:
        me, _ = await console.posted(request)
        require_admin(me, "retry a dead letter")
        if not 0 < outbox_id <= MAX_BIGINT:
            raise Problem(404, f"no reply {outbox_id}")
        svc = console.svc()
        retried = await retry_dead_letter(svc.db, outbox_id)
        await _record(svc, me, "retry", customer_id=retried.customer_id, subject=str(outbox_id))
        log.info("console: reply %s queued again by operator %s", outbox_id, me.operator.id)
        return done(f"{BASE}/dead-letters", f"Reply {outbox_id} is queued again.")


def _subject(event_id: int | None) -> str | None:
    return str(event_id) if event_id is not None else None
