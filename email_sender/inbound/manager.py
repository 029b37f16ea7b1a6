"""The ``inbound`` manager: the doors mail comes in by, and the work after it is stored.

It runs the SMTP listener and the IMAP poller when configured, trains the reply classifier
(shipped examples plus the operators' labels) when the first message needs it, classifies and
indexes what was stored, retrains when a new label is saved (on any node), and empties raw
sources whose retention has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from email_sender.classify import Example, ReplyClassifier
from email_sender.errors import EmailSenderError
from email_sender.inbound.analysis import ReplyAnalyst
from email_sender.inbound.store import InboundStore
from email_sender.managers import Health, State

if TYPE_CHECKING:
    from email_sender.inbound.imap import ImapPoller
    from email_sender.inbound.listener import InboundListener

logger = logging.getLogger(__name__)

# How often pending messages, new labels and expired sources are looked for.
ROUND_SECONDS = 2.0
EXPIRY_EVERY_SECONDS = 3600.0
# What stop() gives each part.
STOP_SECONDS = 5.0


class InboundManager:
    name = "inbound"

    def __init__(
        self,
        store: InboundStore,
        classifier: ReplyClassifier,
        analyst: ReplyAnalyst,
        *,
        listener: InboundListener | None = None,
        poller: ImapPoller | None = None,
        # Not the vector managers: mail is received and stored while they are away, and
        # analysed once they are back.
        depends_on: tuple[str, ...] = ("database", "event_bus"),
    ) -> None:
        self.store = store
        self.classifier = classifier
        self.analyst = analyst
        self.listener = listener
        self.poller = poller
        self.depends_on = depends_on
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._labels_seen: tuple[int, float] = (-1, 0.0)
        self._train_lock = asyncio.Lock()
        self._expired_at = 0.0
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    async def on_stored(self, row: dict[str, Any]) -> None:
        """The receiver's listener: a new message is waiting for analysis."""
        self.wake()

    async def relearn(self) -> None:
        """Retrain now from the saved labels: a label takes effect at once on this node (and
        within a round on the others)."""
        await self._retrain_if_labelled()

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.start()
        if self.poller is not None:
            await self.poller.start()
        self._task = asyncio.create_task(self._run(), name="inbound-analysis")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, STOP_SECONDS)
        if self.poller is not None:
            await self.poller.stop()
        if self.listener is not None:
            await self.listener.stop()

    async def health(self) -> Health:
        if self._task is None:
            return Health(State.STOPPED)
        if self._task.done():
            return Health(State.FAILED, "the analysis loop ended", self.last_error)
        if self.listener is not None:
            listener = await self.listener.health()
            if listener.state != State.RUNNING:
                # The SMTP door is closed: senders are refused or time out.
                return Health(State.FAILED, f"smtp listener: {listener.detail}",
                              listener.last_error)
        problems = [
            f"{part}: {error}"
            for part, error in (
                ("imap", self.poller.last_error if self.poller else None),
                ("analysis", self.last_error),
            )
            if error
        ]
        if problems:
            return Health(State.DEGRADED, "; ".join(problems), problems[0])
        return Health(State.RUNNING, self._detail())

    def _detail(self) -> str:
        doors = ["webhook"]
        if self.listener is not None:
            doors.append(f"smtp {self.listener.host}:{self.listener.port}")
        if self.poller is not None:
            doors.append("imap")
        return "receiving by " + ", ".join(doors)

    def info(self) -> dict[str, Any]:
        return {
            "classifier_trained": self.classifier.trained,
            "labels": max(self._labels_seen[0], 0),
            "analysis": dict(self.analyst.counters),
            "smtp": self.listener.info() if self.listener else None,
            "imap": self.poller.info() if self.poller else None,
        }

    async def _run(self) -> None:
        while True:
            try:
                # Trained on first need: a node that receives nothing never pays for it.
                if self.classifier.trained or await self.store.pending(1):
                    await self._retrain_if_labelled()
                    await self.analyst.process_pending()
                if time.monotonic() - self._expired_at >= EXPIRY_EVERY_SECONDS:
                    self._expired_at = time.monotonic()
                    emptied = await self.store.expire_raw()
                    if emptied:
                        logger.info("inbound_raw_expired", extra={"count": emptied})
                self.last_error = None
            except EmailSenderError as exc:
                self.last_error = exc.message
                logger.warning("inbound_round_failed", extra={"error": exc.message})
            except Exception as exc:  # a bug must not end the analysis for good
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("inbound_round_crashed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), ROUND_SECONDS)

    async def _retrain_if_labelled(self) -> None:
        async with self._train_lock:
            seen = await self.store.labels_version()
            if seen == self._labels_seen and self.classifier.trained:
                return
            labels = await self.store.labels()
            await self.classifier.train(
                [Example(text=label["text"], intent=label["intent"]) for label in labels]
            )
            self._labels_seen = seen
            logger.info("reply_classifier_trained", extra={"labels": len(labels)})
