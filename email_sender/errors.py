"""One exception tree for the whole service.

Third-party errors are translated to these at the adapter edge, once, with ``raise ... from exc``;
nothing above an adapter catches a library's exception.

    EmailSenderError
    ├── ConfigError                      bad config file, key or value
    ├── ModeError                        the service mode forbids this operation
    ├── StoreError                       the SQL database failed
    │   ├── DatabaseUnavailable          cannot connect to it
    │   └── DuplicateKey                 a unique key is already taken
    ├── ValidationError                  a request or argument is invalid (field + reason)
    │   └── PayloadTooLarge              over a configured size limit
    ├── NotFound                         no such resource
    ├── Conflict                         the resource is in a state that forbids the operation
    ├── DeliveryError                    sending mail failed
    │   ├── TransientDeliveryError       try again later (4xx, timeouts, connection errors)
    │   └── PermanentDeliveryError       never succeeds (5xx)
    ├── SendWithdrawn                    a send was called off before its SMTP transaction began
    ├── InboundError                     receiving mail failed
    │   ├── MailboxUnavailable           the IMAP server cannot be reached or dropped the connection
    │   │   └── MailboxAuthFailed        the IMAP server refused the credentials
    │   └── FolderUnavailable            the IMAP server refused a command on one folder
    ├── VectorError                      the vector side failed
    │   ├── DimensionMismatch            vector size differs from the collection's
    │   ├── EmbedderUnavailable          the embedder cannot answer now
    │   └── VectorStoreUnavailable       the vector store cannot answer now
    │       ├── VectorStoreConnectionRefused
    │       ├── VectorStoreTimeout
    │       ├── VectorStoreAuthError
    │       └── VectorStoreLocked        another process holds the embedded store
    ├── EventBusError                    the event bus failed
    ├── IntegrityError                   a checksum or count does not match
    ├── PortInUse                        a listening port is already taken
    └── NodeUnreachable                  a running node does not answer over HTTP
"""

from __future__ import annotations

from typing import Any


class EmailSenderError(Exception):
    """The email service failed."""

    code = "internal_error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__class__.__doc__ or self.__class__.__name__).strip()
        self.details = details
        super().__init__(self.message)


class ConfigError(EmailSenderError):
    """The configuration is invalid."""

    code = "config_error"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems), problems=self.problems)


class ModeError(EmailSenderError):
    """The service mode forbids this operation."""

    code = "service_mode"


class StoreError(EmailSenderError):
    """The SQL database failed."""

    code = "store_error"


class DatabaseUnavailable(StoreError):
    """The SQL database cannot be reached."""

    code = "database_unavailable"


class DuplicateKey(StoreError):
    """A unique key is already taken."""

    code = "duplicate_key"


class ValidationError(EmailSenderError):
    """The request is invalid."""

    code = "validation_error"

    def __init__(self, field: str, reason: str, **details: Any) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}", field=field, reason=reason, **details)


class PayloadTooLarge(ValidationError):
    """The request is over a configured size limit."""

    code = "payload_too_large"


class NotFound(EmailSenderError):
    """No such resource."""

    code = "not_found"


class Conflict(EmailSenderError):
    """The resource is in a state that forbids this operation."""

    code = "conflict"


class DeliveryError(EmailSenderError):
    """Sending mail failed."""

    code = "delivery_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        smtp_code: int | None = None,
        relay: str | None = None,
        **details: Any,
    ) -> None:
        self.smtp_code = smtp_code
        self.relay = relay
        super().__init__(message, smtp_code=smtp_code, relay=relay, **details)


class TransientDeliveryError(DeliveryError):
    """Sending failed for now; a later attempt may succeed."""

    code = "delivery_deferred"


class PermanentDeliveryError(DeliveryError):
    """Sending failed for good."""

    code = "delivery_failed"


class SendWithdrawn(EmailSenderError):
    """The send was called off before its SMTP transaction began; nothing was sent."""

    code = "send_withdrawn"


class InboundError(EmailSenderError):
    """Receiving mail failed."""

    code = "inbound_error"


class MailboxUnavailable(InboundError):
    """The IMAP server cannot be reached or dropped the connection."""

    code = "mailbox_unavailable"


class MailboxAuthFailed(MailboxUnavailable):
    """The IMAP server refused the credentials: check inbound.imap.username and password."""

    code = "mailbox_auth_failed"


class FolderUnavailable(InboundError):
    """The IMAP server refused a command on one folder (missing, no right to read it)."""

    code = "folder_unavailable"


class VectorError(EmailSenderError):
    """The vector side failed."""

    code = "vector_error"


class DimensionMismatch(VectorError):
    """The vector size differs from the collection's."""

    code = "invalid_vector_size"

    def __init__(self, got: int, expected: int) -> None:
        self.got = got
        self.expected = expected
        super().__init__(
            f"invalid vector size: got {got}, expected {expected}", got=got, expected=expected
        )


class EmbedderUnavailable(VectorError):
    """The embedder cannot answer now."""

    code = "embedder_unavailable"


class VectorStoreUnavailable(VectorError):
    """The vector store cannot answer now."""

    code = "vector_store_unavailable"


class VectorStoreConnectionRefused(VectorStoreUnavailable):
    """The vector store refused the connection: is Qdrant running at that URL?"""

    code = "vector_store_connection_refused"


class VectorStoreTimeout(VectorStoreUnavailable):
    """The vector store did not answer in time: check its load and `qdrant.timeout`."""

    code = "vector_store_timeout"


class VectorStoreAuthError(VectorStoreUnavailable):
    """The vector store refused the credentials: check `qdrant.api_key`."""

    code = "vector_store_auth_failed"


class VectorStoreLocked(VectorStoreUnavailable):
    """Another process holds the embedded vector store: stop it or use another data dir."""

    code = "vector_store_locked"


class EventBusError(EmailSenderError):
    """The event bus failed."""

    code = "event_bus_error"


class IntegrityError(EmailSenderError):
    """A checksum or count does not match."""

    code = "integrity_error"


class PortInUse(EmailSenderError):
    """A listening port is already taken."""

    code = "port_in_use"


class NodeUnreachable(EmailSenderError):
    """The node does not answer over HTTP."""

    code = "node_unreachable"
