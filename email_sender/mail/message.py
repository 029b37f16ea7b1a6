"""What the API accepts as an email, the rules it must pass, and the MIME message built from it.

:func:`prepare_email` turns a request (:class:`EmailIn`) into a :class:`PreparedEmail`, applying
every rule and naming the offending field by its path (``to[2]``, ``headers.X-Foo``,
``attachments[0].content_base64``, ``variables.first_name``). Rules on shape and counts raise
:class:`ValidationError` (422); byte-size limits (body, attachments, metadata) raise
:class:`PayloadTooLarge` (413). :func:`build_mime` builds the message the transport sends.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, unquote
from typing import Any

import cachetools
import email_validator
from pydantic import BaseModel, ConfigDict, Field, field_validator

from email_sender.errors import PayloadTooLarge, ValidationError
from email_sender.mail.templates import TemplateIn, TemplateRenderer
from email_sender.settings import MailSettings

STRUCTURAL_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "message-id", "date", "mime-version", "sender",
     "reply-to", "return-path"}
)
MAX_HEADER_VALUE_CHARS = 998
MAX_IDEMPOTENCY_KEY_CHARS = 255
MAX_FILENAME_CHARS = 255

_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# RFC 5322 field-name: printable US-ASCII except colon.
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*")
_NAME_ADDR = re.compile(r"\s*(?P<name>[^<>]*?)\s*<(?P<addr>[^<>]*)>\s*")
# Everything str.splitlines() breaks on, and NUL: the email package refuses such header values
# when the message is built, so they are refused when the email is accepted instead.
_LINE_BREAK = re.compile("[\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class AttachmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str
    content_type: str = "application/octet-stream"
    content_base64: str


class EmailIn(BaseModel):
    """One email as the API receives it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = Field(None, alias="from")
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    attachments: list[AttachmentIn] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    send_at: datetime | None = None
    template: TemplateIn | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    dedupe: bool | None = None

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _single_address_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def fingerprint(self) -> str:
        """SHA-256 of the request as canonical JSON, defaults and the idempotency key left out."""
        body = self.model_dump(
            mode="json", by_alias=True, exclude_defaults=True, exclude={"idempotency_key"}
        )
        return hashlib.sha256(_canonical_json(body).encode()).hexdigest()


Attachment = tuple[str, str, bytes]


@dataclass(frozen=True)
class PreparedEmail:
    """A validated email, ready for the outbox; addresses are normalised ``Name <addr>`` forms."""

    message_id: str
    from_addr: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str | None
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]
    attachments: list[Attachment]
    tags: list[str]
    metadata: dict[str, Any]
    send_at: datetime | None
    request_fingerprint: str
    idempotency_key: str | None = None
    dedupe: bool | None = None

    @property
    def sender(self) -> str:
        """The envelope sender: the bare address of ``from_addr``."""
        return address_of(self.from_addr)

    @property
    def recipients(self) -> list[str]:
        """Envelope recipients: bare addresses of to, cc and bcc, de-duplicated, order kept."""
        seen: dict[str, None] = {}
        for value in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(address_of(value), None)
        return list(seen)

    def to_row(self) -> dict[str, Any]:
        """Plain JSON-able values, attachments base64-encoded, ``send_at`` as ISO-8601."""
        return {
            "message_id": self.message_id,
            "from_addr": self.from_addr,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "reply_to": self.reply_to,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "headers": dict(self.headers),
            "attachments": [
                {"filename": name, "content_type": ctype,
                 "content_base64": base64.b64encode(content).decode("ascii")}
                for name, ctype, content in self.attachments
            ],
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "request_fingerprint": self.request_fingerprint,
            "idempotency_key": self.idempotency_key,
            "dedupe": self.dedupe,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PreparedEmail:
        """Rebuild from :meth:`to_row` output; JSON text columns are decoded as well."""
        values: dict[str, Any] = {name: row.get(name) for name in _ROW_FIELDS}
        for name in _JSON_FIELDS:
            if isinstance(values[name], str | bytes):
                values[name] = json.loads(values[name])
        return cls(
            message_id=values["message_id"],
            from_addr=values["from_addr"],
            to=list(values["to"] or []),
            cc=list(values["cc"] or []),
            bcc=list(values["bcc"] or []),
            reply_to=values["reply_to"],
            subject=values["subject"] or "",
            text=values["text"],
            html=values["html"],
            headers=dict(values["headers"] or {}),
            attachments=[
                (item["filename"], item["content_type"], base64.b64decode(item["content_base64"]))
                for item in values["attachments"] or []
            ],
            tags=list(values["tags"] or []),
            metadata=dict(values["metadata"] or {}),
            send_at=_parse_send_at(values["send_at"]),
            request_fingerprint=values["request_fingerprint"],
            idempotency_key=values["idempotency_key"],
            dedupe=values["dedupe"],
        )


_JSON_FIELDS = ("to", "cc", "bcc", "headers", "tags", "metadata", "attachments")
_ROW_FIELDS = (
    "message_id", "from_addr", "to", "cc", "bcc", "reply_to", "subject", "text", "html",
    "headers", "attachments", "tags", "metadata", "send_at", "request_fingerprint",
    "idempotency_key", "dedupe",
)


def _parse_send_at(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    # Databases without time zones (SQLite) hand back naive values that were stored as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


# --- addresses -------------------------------------------------------------------------------


def _split_address(value: str) -> tuple[str, str]:
    """Split ``Name <addr>`` or a bare ``addr`` into (display name, address)."""
    match = _NAME_ADDR.fullmatch(value)
    if match is None:
        return "", value.strip()
    name = match.group("name")
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = unquote(name)
    return name, match.group("addr").strip()


def address_of(value: str) -> str:
    """The bare address of a ``Name <addr>`` or plain address string."""
    return _split_address(value)[1]


@functools.lru_cache(maxsize=4096)
def _checked_address(addr: str) -> tuple[str, str]:
    """``addr``'s normalised local part and domain; EmailNotValidError when it is not one.

    Kept for the addresses seen last: checking one costs ~80 µs, most of an email's
    preparation, and a sender, or a venue written to again, comes back often."""
    valid = email_validator.validate_email(addr, check_deliverability=False, allow_smtputf8=True)
    local, _, domain = valid.normalized.rpartition("@")
    return local, domain


def _normalise_address(value: str, field_path: str, *, display_name: bool) -> str:
    _refuse_line_breaks(value, field_path)
    name, addr = _split_address(value)
    if name and not display_name:
        raise ValidationError(field_path, "give a bare address, without a display name")
    try:
        local, domain = _checked_address(addr)
    except email_validator.EmailNotValidError as exc:
        raise ValidationError(field_path, f"invalid address: {exc}") from exc
    return str(Address(display_name=name, username=local, domain=domain))


def normalise_address(value: str, field_path: str) -> str:
    """``Name <addr>`` (or ``addr``) checked and normalised; ValidationError naming the field."""
    return _normalise_address(value, field_path, display_name=True)


def _address_list(values: list[str], name: str) -> list[str]:
    return [
        _normalise_address(value, f"{name}[{index}]", display_name=True)
        for index, value in enumerate(values)
    ]


# --- rules -----------------------------------------------------------------------------------


def _refuse_line_breaks(value: str, field_path: str) -> None:
    found = _LINE_BREAK.search(value)
    if found is not None:
        raise ValidationError(
            field_path,
            f"must not contain line breaks or NUL (found U+{ord(found.group()):04X} "
            f"at position {found.start()})",
        )


def _check_recipients(data: EmailIn, limits: MailSettings) -> tuple[list[str], ...]:
    total = len(data.to) + len(data.cc) + len(data.bcc)
    if total == 0:
        raise ValidationError("to", "give at least one recipient in to, cc or bcc")
    if total > limits.max_recipients:
        raise ValidationError("to", f"{total} recipients, at most {limits.max_recipients} allowed")
    return (
        _address_list(data.to, "to"),
        _address_list(data.cc, "cc"),
        _address_list(data.bcc, "bcc"),
    )


def _sender(data: EmailIn, limits: MailSettings) -> str:
    if data.from_ is not None:
        return _normalise_address(data.from_, "from", display_name=True)
    if limits.default_from:
        return _normalise_address(limits.default_from, "from", display_name=True)
    raise ValidationError("from", "required: no default sender is configured")


def _check_headers(headers: Mapping[str, str], limits: MailSettings) -> dict[str, str]:
    allowed = {name.lower() for name in limits.allowed_headers}
    seen: set[str] = set()
    for name, value in headers.items():
        path = f"headers.{name.encode('unicode_escape').decode('ascii')}"
        _refuse_line_breaks(name, path)
        if not _HEADER_NAME.fullmatch(name):
            raise ValidationError(path, "header names are printable ASCII without ':' or spaces")
        lowered = name.lower()
        if lowered in STRUCTURAL_HEADERS or lowered.startswith("content-"):
            raise ValidationError(path, "this header is set by the service")
        if lowered not in allowed:
            raise ValidationError(path, "header not allowed (see mail.allowed_headers)")
        if lowered in seen:
            raise ValidationError(path, "header given twice")
        seen.add(lowered)
        _refuse_line_breaks(value, path)
        if len(value) > MAX_HEADER_VALUE_CHARS:
            raise ValidationError(path, f"longer than {MAX_HEADER_VALUE_CHARS} characters")
    return dict(headers)


def _check_body(text: str | None, html: str | None, limits: MailSettings) -> None:
    if text is None and html is None:
        raise ValidationError("text", "give text, html or a template")
    size = 0
    for name, part in (("text", text), ("html", html)):
        size += len(part.encode("utf-8")) if part else 0
        if size > limits.max_body_bytes:
            raise PayloadTooLarge(name, f"body over {limits.max_body_bytes} bytes")


def _check_filename(filename: str, path: str) -> None:
    _refuse_line_breaks(filename, path)
    if not filename.strip() or filename in (".", ".."):
        raise ValidationError(path, "must not be empty")
    if "/" in filename or "\\" in filename:
        raise ValidationError(path, "must not contain path separators")
    if len(filename) > MAX_FILENAME_CHARS:
        raise ValidationError(path, f"longer than {MAX_FILENAME_CHARS} characters")


def _check_attachments(attachments: list[AttachmentIn], limits: MailSettings) -> list[Attachment]:
    if len(attachments) > limits.max_attachments:
        raise ValidationError(
            "attachments", f"{len(attachments)} attachments, at most {limits.max_attachments}"
        )
    decoded: list[Attachment] = []
    total = 0
    for index, item in enumerate(attachments):
        prefix = f"attachments[{index}]"
        _check_filename(item.filename, f"{prefix}.filename")
        _refuse_line_breaks(item.content_type, f"{prefix}.content_type")
        if not _CONTENT_TYPE.fullmatch(item.content_type):
            raise ValidationError(f"{prefix}.content_type", "must look like type/subtype")
        path = f"{prefix}.content_base64"
        # Refuse before decoding: the decoded size is known from the encoded length.
        if total + len(item.content_base64) * 3 // 4 - 2 > limits.max_attachment_bytes:
            raise PayloadTooLarge(path, f"attachments over {limits.max_attachment_bytes} bytes")
        try:
            content = base64.b64decode(item.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError(path, "not valid base64") from exc
        total += len(content)
        if total > limits.max_attachment_bytes:
            raise PayloadTooLarge(path, f"attachments over {limits.max_attachment_bytes} bytes")
        decoded.append((item.filename, item.content_type.lower(), content))
    return decoded


def _check_metadata(metadata: dict[str, Any], limits: MailSettings) -> dict[str, Any]:
    try:
        encoded = _canonical_json(metadata).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationError("metadata", f"must be a JSON object: {exc}") from exc
    if len(encoded) > limits.max_metadata_bytes:
        raise PayloadTooLarge("metadata", f"over {limits.max_metadata_bytes} bytes as JSON")
    result: dict[str, Any] = json.loads(encoded)
    return result


def _check_tags(tags: list[str], limits: MailSettings) -> list[str]:
    if len(tags) > limits.max_tags:
        raise ValidationError("tags", f"{len(tags)} tags, at most {limits.max_tags}")
    for index, tag in enumerate(tags):
        _refuse_line_breaks(tag, f"tags[{index}]")
        if not _TAG.fullmatch(tag):
            raise ValidationError(f"tags[{index}]", "1 to 64 characters among A-Z a-z 0-9 _ . : -")
    return list(dict.fromkeys(tags))


def _check_subject(subject: str, limits: MailSettings) -> str:
    _refuse_line_breaks(subject, "subject")
    if len(subject) > limits.max_subject_chars:
        raise ValidationError("subject", f"longer than {limits.max_subject_chars} characters")
    return subject


def _check_send_at(send_at: datetime | None) -> datetime | None:
    if send_at is None:
        return None
    if send_at.tzinfo is None or send_at.utcoffset() is None:
        raise ValidationError("send_at", "must include a time zone, e.g. 2030-01-01T09:00:00Z")
    return send_at


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise ValidationError(
            "idempotency_key", f"1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable characters"
        )
    return key


def _content(
    data: EmailIn, renderer: TemplateRenderer | None
) -> tuple[str | None, str | None, str | None]:
    """Subject, text and html: from the request, or rendered from its template."""
    if data.template is None:
        return data.subject, data.text, data.html
    for part in data.template.parts():
        if getattr(data, part) is not None:
            raise ValidationError(f"template.{part}", f"{part} given both inline and in template")
    rendered = (renderer or TemplateRenderer()).render(data.template, data.variables)
    return (
        rendered.subject if rendered.subject is not None else data.subject,
        rendered.text if rendered.text is not None else data.text,
        rendered.html if rendered.html is not None else data.html,
    )


def _new_message_id(sender: str) -> str:
    return f"<{uuid.uuid4().hex}@{_message_id_domain(address_of(sender).rpartition('@')[2])}>"


@functools.lru_cache(maxsize=1024)
def _message_id_domain(domain: str) -> str:
    """The sender's domain as ASCII for a Message-ID (``localhost`` if it is not a domain)."""
    try:
        valid = email_validator.validate_email(f"x@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        return "localhost"
    return str(valid.ascii_domain)


def prepare_email(
    data: EmailIn, limits: MailSettings, *, renderer: TemplateRenderer | None = None
) -> PreparedEmail:
    """Apply every rule to ``data``; return the email to store, or raise ValidationError."""
    from_addr = _sender(data, limits)
    to, cc, bcc = _check_recipients(data, limits)
    reply_to = (
        _normalise_address(data.reply_to, "reply_to", display_name=True)
        if data.reply_to is not None
        else None
    )
    headers = _check_headers(data.headers, limits)
    subject, text, html = _content(data, renderer)
    subject = _check_subject(subject or "", limits)
    _check_body(text, html, limits)
    return PreparedEmail(
        message_id=_new_message_id(from_addr),
        from_addr=from_addr,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        text=text,
        html=html,
        headers=headers,
        attachments=_check_attachments(data.attachments, limits),
        tags=_check_tags(data.tags, limits),
        metadata=_check_metadata(data.metadata, limits),
        send_at=_check_send_at(data.send_at),
        request_fingerprint=data.fingerprint(),
        idempotency_key=_check_idempotency_key(data.idempotency_key),
        dedupe=data.dedupe,
    )


# --- MIME ------------------------------------------------------------------------------------


class _CachingHeaderRegistry(HeaderRegistry):
    """The standard registry builds a new class for every header it parses; build each once.

    That class creation was a fifth of the time spent building a message. Parsed headers are
    immutable strings, so a header whose value repeats (From, Content-Type, MIME-Version across
    a campaign) is parsed once too.
    """

    def __init__(self, max_values: int = 4096) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}
        self._parsed: cachetools.LRUCache[tuple[str, str], BaseHeader] = cachetools.LRUCache(
            max_values
        )

    def __call__(self, name: str, value: str) -> BaseHeader:
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            header = self._parsed[key] = super().__call__(name, value)
        return header

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


_POLICY = email_policy.default.clone(header_factory=_CachingHeaderRegistry())


def build_mime(email: PreparedEmail, *, date: datetime | None = None) -> EmailMessage:
    """The message to send: never a Bcc header; SMTPUTF8-ready for international addresses."""
    message = EmailMessage(policy=_POLICY)
    message["From"] = email.from_addr
    if email.to:
        message["To"] = ", ".join(email.to)
    if email.cc:
        message["Cc"] = ", ".join(email.cc)
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = email.message_id
    for name, value in email.headers.items():
        message[name] = value
    if email.text is not None:
        message.set_content(email.text)
        if email.html is not None:
            message.add_alternative(email.html, subtype="html")
    elif email.html is not None:
        message.set_content(email.html, subtype="html")
    for filename, content_type, content in email.attachments:
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message
