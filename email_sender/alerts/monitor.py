"""The alert monitor: a hook of the node that checks its figures and mails alert episodes.

Every ``alerts.interval`` it takes the node's figures (:mod:`email_sender.alerts.snapshot`),
runs the checks, lets the notifier decide, and hands each mail to the intake, as the API would.
A mail the outbox cannot take now (the database is away) is kept and handed in again at the
next evaluation; its idempotency key keeps it single. Runs only when ``alerts.enabled``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import suppress

from email_sender.alerts.checks import Check, evaluate
from email_sender.alerts.mails import compose
from email_sender.alerts.notifier import Notice, Notifier
from email_sender.alerts.snapshot import NodeFigures
from email_sender.errors import EmailSenderError, ValidationError
from email_sender.mail.intake import Intake
from email_sender.settings import AlertSettings

logger = logging.getLogger(__name__)

# Unsent mails kept for the next evaluation, at most: an outbox away for long loses the oldest.
MAX_UNSENT = 100


class AlertMonitor:
    def __init__(
        self,
        settings: AlertSettings,
        *,
        figures: NodeFigures,
        intake: Intake,
        node: str,
        notifier: Notifier | None = None,
    ) -> None:
        if not settings.to or settings.sender is None:
            raise EmailSenderError("alerts.to and alerts.sender are needed to mail alerts")
        self.settings = settings
        self.figures = figures
        self.intake = intake
        self.node = node
        self.notifier = notifier or Notifier(settings)
        self.last_checks: list[Check] = []
        self.rounds = 0  # evaluations done
        self.unsent: list[Notice] = []
        self.mailed: deque[str] = deque(maxlen=1000)  # email ids, newest last
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        self.figures.sample()  # the window's first baseline
        self._task = asyncio.create_task(self._run(), name="alert_monitor")
        logger.info("alerts_started", extra={"to": self.settings.to,
                                             "interval_s": self.settings.interval})

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await task

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                await self.evaluate()
            except Exception as exc:  # one bad evaluation must not end the monitor
                logger.exception("alert_evaluation_failed",
                                 extra={"error": f"{type(exc).__name__}: {exc}"})

    async def evaluate(self) -> list[Notice]:
        """One round: figures, checks, notices; mail what is due. Answers the new notices."""
        self.last_checks = evaluate(await self.figures.snapshot())
        self.rounds += 1
        notices = self.notifier.observe(self.last_checks)
        for notice in notices:
            logger.warning(
                f"alert_{notice.kind}",
                extra={"check": notice.check.name, "severity": notice.severity.label,
                       "level": notice.level, "value": notice.check.value,
                       "summary": notice.check.summary, "episode": notice.episode},
            )
        self.unsent = (self.unsent + notices)[-MAX_UNSENT:]
        await self._hand_in()
        return notices

    async def _hand_in(self) -> None:
        while self.unsent:
            notice = self.unsent[0]
            email = compose(notice, node=self.node, sender=str(self.settings.sender),
                            cooldown=self.settings.cooldown)
            try:
                accepted = await self.intake.accept(email)
            except ValidationError as exc:  # never accepted as it is: say so, go on
                self.unsent.pop(0)
                logger.error("alert_mail_refused",
                             extra={"check": notice.check.name, "kind": notice.kind,
                                    "error": str(exc)})
                continue
            except EmailSenderError as exc:
                logger.warning("alert_mail_deferred",
                               extra={"check": notice.check.name, "kind": notice.kind,
                                      "error": str(exc)})
                return
            self.unsent.pop(0)
            self.mailed.append(accepted.id)
            logger.info("alert_mailed", extra={"check": notice.check.name, "kind": notice.kind,
                                               "email_id": accepted.id,
                                               "status": accepted.status})
