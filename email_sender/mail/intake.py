"""Accepting email: validate, commit to the outbox, then tell the workers.

A single email is committed in its own transaction before its id is returned. A batch validates
every item on its own; the valid ones are committed together and the answer says, per item,
what became of it.

Validation that renders a template, and every batch, runs on a small pool of threads so that the
event loop keeps serving meanwhile; rendering itself is bounded (see
:mod:`email_sender.mail.templates`), and a batch renders within one shared deadline.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError as PydanticValidationError

from email_sender import metrics
from email_sender.errors import EmailSenderError, PayloadTooLarge, ValidationError
from email_sender.events import EventBus
from email_sender.mail.message import EmailIn, PreparedEmail, prepare_email
from email_sender.mail.outbox import Accepted, Outbox, Status
from email_sender.mail.templates import TemplateRenderer
from email_sender.settings import MailSettings

logger = logging.getLogger(__name__)

# Few threads: a flood of heavy templates waits its turn instead of taking every core, and the
# default executor that other parts use stays free. Threads start only when first needed.
PREPARE_THREADS = 4
# Wall time one batch may spend rendering templates, all its emails together.
BATCH_RENDER_SECONDS = 5.0

_prepare_pool = ThreadPoolExecutor(max_workers=PREPARE_THREADS, thread_name_prefix="prepare")

_P = ParamSpec("_P")
_T = TypeVar("_T")


async def _off_loop(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_prepare_pool, functools.partial(func, *args, **kwargs))


class Intake:
    def __init__(self, outbox: Outbox, bus: EventBus, limits: MailSettings) -> None:
        self.outbox = outbox
        self.bus = bus
        self.limits = limits
        self.renderer = TemplateRenderer()
        # Called after every commit: wakes the delivery and indexing workers of this node.
        self.listeners: list[Callable[[], None]] = []
        # Asked before a single email is committed: a reason to hold it, or None to queue it.
        self.guard: Callable[[PreparedEmail], Awaitable[dict[str, Any] | None]] | None = None

    def prepare(
        self,
        data: EmailIn,
        idempotency_key: str | None = None,
        *,
        renderer: TemplateRenderer | None = None,
    ) -> PreparedEmail:
        """Apply every rule to ``data``; with a template, call it off the event loop."""
        if idempotency_key is not None:
            if data.idempotency_key is not None and data.idempotency_key != idempotency_key:
                raise ValidationError(
                    "idempotency_key", "differs from the Idempotency-Key header; send one"
                )
            data = data.model_copy(update={"idempotency_key": idempotency_key})
        try:
            return prepare_email(data, self.limits, renderer=renderer or self.renderer)
        except ValidationError as exc:
            metrics.emails_rejected.labels(exc.code).inc()
            raise

    async def accept(self, data: EmailIn, *, idempotency_key: str | None = None) -> Accepted:
        if data.template is None:  # no template: work in proportion to the request's size
            email = self.prepare(data, idempotency_key)
        else:
            email = await _off_loop(self.prepare, data, idempotency_key)
        held = await self.guard(email) if self.guard is not None else None
        if held is not None:
            accepted = await self.outbox.accept(email, status=Status.HELD, held_reason=held)
        else:
            accepted = await self.outbox.accept(email)
        if accepted.created:
            await self._announce([accepted])
        return accepted

    async def accept_batch(self, items: list[Any]) -> list[dict[str, Any]]:
        """Validate each item; commit the valid ones; answer a result per item, in order."""
        if len(items) > self.limits.batch_max:
            raise PayloadTooLarge(
                "emails", f"{len(items)} emails is over the batch limit of {self.limits.batch_max}"
            )
        results: list[dict[str, Any]] = [{} for _ in items]
        plain: list[tuple[int, PreparedEmail]] = []
        keyed: list[tuple[int, PreparedEmail]] = []
        prepared = await _off_loop(self._prepare_batch, items)
        for index, outcome in enumerate(prepared):
            if isinstance(outcome, ValidationError):
                results[index] = _rejection(index, outcome)
            else:
                (keyed if outcome.idempotency_key else plain).append((index, outcome))
        created: list[Accepted] = []
        for (index, _email), accepted in zip(
            plain, await self.outbox.accept_many([email for _, email in plain]), strict=True
        ):
            results[index] = _accepted(index, accepted)
            created.append(accepted)
        for index, email in keyed:
            try:
                accepted = await self.outbox.accept(email)
            except EmailSenderError as exc:
                results[index] = _rejection(index, exc)
                continue
            results[index] = _accepted(index, accepted)
            if accepted.created:
                created.append(accepted)
        await self._announce(created)
        return results

    async def accept_keyed(
        self, items: list[EmailIn]
    ) -> list[tuple[PreparedEmail, Accepted] | ValidationError]:
        """Emails made by the service itself, each with its idempotency key (a sequence's
        steps): prepared by one shared deadline, committed together, each answered in order
        with what was sent and what the outbox kept, or why it was refused."""
        prepared = await _off_loop(self._prepare_models, items)
        valid = [email for email in prepared if isinstance(email, PreparedEmail)]
        kept = iter(await self.outbox.accept_keyed(valid))
        results: list[tuple[PreparedEmail, Accepted] | ValidationError] = []
        for email in prepared:
            results.append(email if isinstance(email, ValidationError) else (email, next(kept)))
        await self._announce([
            result[1] for result in results if isinstance(result, tuple) and result[1].created
        ])
        return results

    def _prepare_models(self, items: list[EmailIn]) -> list[PreparedEmail | ValidationError]:
        renderer = self.renderer.within(time.monotonic() + BATCH_RENDER_SECONDS)
        outcomes: list[PreparedEmail | ValidationError] = []
        for item in items:
            try:
                outcomes.append(self.prepare(item, renderer=renderer))
            except ValidationError as exc:
                outcomes.append(exc)
        return outcomes

    def _prepare_batch(self, items: list[Any]) -> list[PreparedEmail | ValidationError]:
        """Each item prepared, or why not; every template renders by one shared deadline."""
        renderer = self.renderer.within(time.monotonic() + BATCH_RENDER_SECONDS)
        outcomes: list[PreparedEmail | ValidationError] = []
        for item in items:
            try:
                outcomes.append(self.prepare(EmailIn.model_validate(item), renderer=renderer))
            except PydanticValidationError as exc:
                outcomes.append(_pydantic_problem(exc))
            except ValidationError as exc:
                outcomes.append(exc)
        return outcomes

    async def _announce(self, accepted: list[Accepted]) -> None:
        if not accepted:
            return
        metrics.emails_accepted.inc(len(accepted))
        for listener in self.listeners:
            listener()
        for item in accepted:
            await self.bus.publish(
                "email.accepted", id=item.id, message_id=item.message_id, status=item.status
            )


def _accepted(index: int, accepted: Accepted) -> dict[str, Any]:
    return {
        "index": index,
        "id": accepted.id,
        "message_id": accepted.message_id,
        "status": accepted.status,
        "created": accepted.created,
    }


def _rejection(index: int, exc: EmailSenderError) -> dict[str, Any]:
    return {
        "index": index,
        "error": {"code": exc.code, "message": exc.message, "details": exc.details},
    }


def _pydantic_problem(exc: PydanticValidationError) -> ValidationError:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "email"
    reason = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
    return ValidationError(field, str(reason).removeprefix("Value error, "))
