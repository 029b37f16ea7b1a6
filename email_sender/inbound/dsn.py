"""Bounces and complaints: RFC 3464 delivery status notifications and RFC 5965 feedback reports.

A bounce says which recipients failed and whether for good (``5.x.x`` + ``failed``) or for now;
a complaint says a recipient reported the mail as spam. Both name the returned message, whose
Message-ID links the report to the email the service sent. Standard reports are read from their
machine-readable part with the ``email`` package; MTAs that send only prose (qmail, old Exim)
get a careful fallback that reports a bounce only when it finds both a recipient and a code.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import HeaderParser

from email_sender.inbound.mime import body_text, clean_text, iter_parts
from email_sender.inbound.parse import normalise_message_id

_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC_CODE = re.compile(r"\b([45])\d\d\b")
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+"
)
_BOUNCE_SENDERS = ("mailer-daemon", "postmaster", "mail-daemon")
_BOUNCE_SUBJECTS = (
    "undelivered mail returned to sender",
    "mail delivery failed",
    "delivery status notification",
    "undeliverable",
    "delivery failure",
    "failure notice",
    "returned mail",
    "mail delivery failure",
    "non remis",
    "unzustellbar",
    "no se puede entregar",
)
# Where prose bounces start quoting the returned message: addresses below it are not recipients.
_RETURNED_COPY_MARKERS = (
    "--- below this line is a copy of the message",
    "------ this is a copy of the message",
    "----- original message -----",
    "------- original message -------",
    "original message follows",
    "----- the header of the original message is following.",
)
_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,30}")
_SPACES = re.compile(r"\s+")
_RETURNED_HEADERS = ("From", "To", "Subject", "Message-ID")
_FALLBACK_SCAN_CHARS = 20_000
_MAX_RECIPIENTS = 1_000
_MAX_FIELD_CHARS = 2_000


@dataclass(frozen=True)
class BouncedRecipient:
    """One recipient of a delivery status notification."""

    address: str
    action: str
    status: str
    diagnostic: str | None
    remote_mta: str | None

    @property
    def permanent(self) -> bool:
        """Delivery failed for good: a 5.x.x status on a failed action."""
        return self.status.startswith("5") and self.action == "failed"


@dataclass(frozen=True)
class Bounce:
    """A delivery status notification about a message the service sent."""

    recipients: list[BouncedRecipient]
    reporting_mta: str | None
    original_message_id: str | None
    original_headers: dict[str, str]


@dataclass(frozen=True)
class Complaint:
    """A feedback-loop report: a recipient marked a message the service sent as spam."""

    feedback_type: str | None
    user_agent: str | None
    original_rcpt_to: list[str]
    original_mail_from: str | None
    original_message_id: str | None


def parse_report(message: EmailMessage) -> Bounce | Complaint | None:
    """The bounce or complaint ``message`` carries, or None when it is neither."""
    try:
        content_type = message.get_content_type()
        report_type = str(message.get_param("report-type", "")).lower()
    except Exception:  # a Content-Type the header parser cannot model: read as prose
        content_type, report_type = "text/plain", ""
    if content_type == "multipart/report" and report_type == "feedback-report":
        complaint = _complaint(message)
        if complaint is not None:
            return complaint
    if content_type == "multipart/report":
        bounce = _delivery_status_bounce(message)
        if bounce is not None:
            return bounce
    if _looks_like_bounce(message):
        return _prose_bounce(message)
    return None


def _delivery_status_bounce(message: Message) -> Bounce | None:
    status_part = _find_part(message, ("message/delivery-status", "message/global-delivery-status"))
    if status_part is None:
        return None
    blocks = _field_blocks(status_part)
    if not blocks:
        return None
    per_message, per_recipient = blocks[0], blocks[1:]
    recipients = [
        recipient for block in per_recipient if (recipient := _recipient(block)) is not None
    ]
    if not recipients:
        return None
    original = _returned_headers(message)
    return Bounce(
        recipients=recipients[:_MAX_RECIPIENTS],
        reporting_mta=_after_type(_get(per_message, "Reporting-MTA")),
        original_message_id=_original_message_id(original, per_message),
        original_headers=_header_dict(original),
    )


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a report part (delivery-status, feedback-report), per-message first.

    The ``email`` parser splits message/delivery-status into one Message per block and reads
    other message/* parts as one message (the first block as its headers, the rest as its body);
    a part sent base64-encoded arrives as encoded text instead. All three end up as blocks here.
    """
    transfer_encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if not part.is_multipart():
        return _split_blocks(_decoded_payload(part))
    items = [item for item in part.get_payload() if isinstance(item, Message)]
    if transfer_encoding == "base64":
        encoded = re.sub(r"[^A-Za-z0-9+/]", "", "".join(item.as_string() for item in items))
        try:
            return _split_blocks(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
        except binascii.Error:  # one character too many: not base64 after all
            return []
    if part.get_content_type() == "message/delivery-status" or not items:
        return items
    inner = items[0]
    body = inner.get_payload()
    rest = _split_blocks(body.encode("utf-8", "replace")) if isinstance(body, str) else []
    return [inner, *rest]


def _split_blocks(payload: bytes | None) -> list[Message]:
    if not payload:
        return []
    text = payload.decode("utf-8", "replace").replace("\r\n", "\n")
    parser = HeaderParser(policy=email.policy.default)
    return [parser.parsestr(block) for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


def _decoded_payload(part: Message) -> bytes | None:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: nothing readable
        return None
    return payload if isinstance(payload, bytes) else None


def _recipient(fields: Message) -> BouncedRecipient | None:
    address = _address_field(_get(fields, "Final-Recipient")) or _address_field(
        _get(fields, "Original-Recipient")
    )
    if not address:
        return None
    status_match = _ENHANCED_STATUS.search(_get(fields, "Status") or "")
    action = (_get(fields, "Action") or "").lower()
    status = status_match.group(0) if status_match else ""
    if not status:
        status = {"failed": "5.0.0", "delayed": "4.0.0"}.get(action, "2.0.0")
    return BouncedRecipient(
        address=address,
        action=action or ("failed" if status.startswith("5") else "delayed"),
        status=status,
        diagnostic=_get(fields, "Diagnostic-Code"),
        remote_mta=_after_type(_get(fields, "Remote-MTA")),
    )


def _complaint(message: Message) -> Complaint | None:
    report_part = _find_part(message, ("message/feedback-report",))
    if report_part is None:
        return None
    blocks = _field_blocks(report_part)
    if not blocks:
        return None
    fields = blocks[0]
    original = _returned_headers(message)
    rcpt_to = [
        address
        for value in fields.get_all("Original-Rcpt-To") or []
        if (address := _address_field(value))
    ]
    if not rcpt_to and original is not None:
        rcpt_to = [address for address in _ADDRESS.findall(_get(original, "To") or "")]
        rcpt_to = [address.lower() for address in rcpt_to]
    return Complaint(
        feedback_type=(_get(fields, "Feedback-Type") or "").lower() or None,
        user_agent=_get(fields, "User-Agent"),
        original_rcpt_to=list(dict.fromkeys(rcpt_to)),
        original_mail_from=_address_field(_get(fields, "Original-Mail-From")),
        original_message_id=_original_message_id(original, None),
    )


def _looks_like_bounce(message: Message) -> bool:
    sender = _get(message, "From") or ""
    addresses = _ADDRESS.findall(sender)
    local_part = addresses[0].split("@", 1)[0].lower() if addresses else sender.lower()
    if any(local_part.startswith(name) for name in _BOUNCE_SENDERS):
        return True
    subject = (_get(message, "Subject") or "").lower()
    return any(subject.startswith(phrase) for phrase in _BOUNCE_SUBJECTS)


def _prose_bounce(message: Message) -> Bounce | None:
    """A bounce read from text: the first failed address and the first status code near it."""
    text = body_text(message)[:_FALLBACK_SCAN_CHARS]
    lowered = text.lower()
    ends = [index for marker in _RETURNED_COPY_MARKERS if (index := lowered.find(marker)) >= 0]
    notice = text[: min(ends)] if ends else text
    sender_addresses = {
        address.lower() for address in _ADDRESS.findall(_get(message, "From") or "")
    }
    address = next(
        (
            found.lower()
            for found in _ADDRESS.findall(notice)
            if found.lower() not in sender_addresses
            and not found.lower().startswith(_BOUNCE_SENDERS)
        ),
        None,
    )
    status = _status_in(notice)
    if address is None or status is None:
        return None
    original = _returned_headers(message)
    if original is None and ends:
        original = HeaderParser(policy=email.policy.default).parsestr(
            text[min(ends) :].split("\n", 1)[-1].lstrip("\n")
        )
    return Bounce(
        recipients=[
            BouncedRecipient(
                address=address,
                action="failed" if status.startswith("5") else "delayed",
                status=status,
                diagnostic=_diagnostic_line(notice, status),
                remote_mta=None,
            )
        ],
        reporting_mta=None,
        original_message_id=_original_message_id(original, None),
        original_headers=_header_dict(original),
    )


def _status_in(text: str) -> str | None:
    """The first enhanced status code (5.1.1), else a class from the first SMTP reply code."""
    if match := _ENHANCED_STATUS.search(text):
        return match.group(0) if match.group(1) != "2" else None
    if match := _BASIC_CODE.search(text):
        return f"{match.group(1)}.0.0"
    return None


def _diagnostic_line(text: str, status: str) -> str | None:
    code = status if status[2:] != "0.0" else status[0]
    for line in text.splitlines():
        if code in line:
            return line.strip()[:1000]
    return None


def _find_part(message: Message, content_types: tuple[str, ...]) -> Message | None:
    for part in iter_parts(message, into_attached=False):
        if part is not message and part.get_content_type() in content_types:
            return part
    return None


def _returned_headers(message: Message) -> Message | None:
    """The headers of the returned message (message/rfc822 or text/rfc822-headers part)."""
    part = _find_part(
        message,
        (
            "message/rfc822",
            "text/rfc822-headers",
            "message/rfc822-headers",
            "message/global",
            "message/global-headers",
        ),
    )
    if part is None:
        return None
    if part.is_multipart():
        inner = [item for item in part.get_payload() if isinstance(item, Message)]
        return inner[0] if inner else None
    payload = _decoded_payload(part)
    if payload is None:
        return None
    text = payload.decode("utf-8", "replace").replace("\r\n", "\n")
    return HeaderParser(policy=email.policy.default).parsestr(text)


def _original_message_id(original: Message | None, per_message: Message | None) -> str | None:
    if original is not None and (found := normalise_message_id(_get(original, "Message-ID"))):
        return found
    # Google adds the returned message's id to the per-message fields.
    if per_message is not None:
        return normalise_message_id(_get(per_message, "X-Original-Message-ID"))
    return None


def _header_dict(original: Message | None) -> dict[str, str]:
    if original is None:
        return {}
    found = {name: _get(original, name) for name in _RETURNED_HEADERS}
    return {name: value for name, value in found.items() if value}


def _address_field(value: str | None) -> str | None:
    """The address of "rfc822; addr" (or a bare "<addr>"), lower-cased."""
    text = _after_type(value)
    if not text:
        return None
    address = text.strip().strip("<>").strip()
    return address.lower() if "@" in address else None


def _after_type(value: str | None) -> str | None:
    """The value after the "type;" prefix of a DSN field ("dns; mx.example" -> "mx.example")."""
    if not value:
        return None
    kind, separator, rest = value.partition(";")
    if separator and _TYPE_NAME.fullmatch(kind.strip()):
        value = rest
    return value.strip() or None


def _get(fields: Message, name: str) -> str | None:
    """A header value as one line of text, or None when absent, empty or unreadable."""
    try:
        value = fields.get(name)
        text = "" if value is None else str(value)
    except Exception:  # a header the parser cannot model
        return None
    # Stored as text (a suppression's detail, a bounce's diagnostic): no NUL, a bounded length.
    text = _SPACES.sub(" ", clean_text(text[: _MAX_FIELD_CHARS * 2])).strip()
    return text[:_MAX_FIELD_CHARS] or None
