"""Adds inbound mail to a node: the receiver every API can feed, and the ``inbound`` manager
(listener, poller, classification, indexing) where the node runs the vector managers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from email_sender.inbound.receiver import Receiver
from email_sender.inbound.store import InboundStore

if TYPE_CHECKING:
    from email_sender.service import Service


def add_inbound(service: Service, *, with_manager: bool) -> None:
    settings = service.settings
    store = InboundStore(service.db)
    receiver = Receiver(
        settings.inbound, db=service.db, store=store, suppressions=service.suppressions,
        bus=service.bus,
    )
    service.inbound = receiver
    if service.unsubscriber is not None:
        # Mail to unsubscribe@<verp_domain>, the mailto of List-Unsubscribe, unsubscribes.
        receiver.unsubscribe = service.unsubscriber.by_mail
    if not with_manager:
        return
    from email_sender.classify import ReplyClassifier, shipped_examples
    from email_sender.inbound.analysis import ReplyAnalyst
    from email_sender.inbound.manager import InboundManager

    embedder = service.get("embedder")
    qdrant = service.get("qdrant_manager")
    classifier = ReplyClassifier(
        embedder,
        threshold=settings.classifier.threshold,
        examples=shipped_examples(settings.classifier.examples),
    )
    analyst = ReplyAnalyst(
        store, service.bus, classifier=classifier, embedder=embedder, qdrant=qdrant,
        collection=settings.collections.emails,
    )
    listener = None
    if settings.inbound.smtp.enabled:
        from email_sender.inbound.listener import InboundListener

        listener = InboundListener(settings.inbound.smtp, receiver.receive)
        # A taken port is the operator's to fix: fail the build, as a taken API port does.
        listener.reserve()
    poller = None
    if settings.inbound.imap.url:
        from email_sender.inbound.imap import ImapPoller

        poller = ImapPoller(
            settings.inbound.imap, service.db, receiver.receive,
            max_message_bytes=settings.inbound.max_message_bytes,
            owner=service.node_id,
        )
    manager = InboundManager(store, classifier, analyst, listener=listener, poller=poller)
    receiver.listeners.append(manager.on_stored)
    service.add(manager)
