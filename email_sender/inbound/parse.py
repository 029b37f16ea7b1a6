"""One received raw message read into plain facts: ids, addresses, subject, date and best text.

Everything downstream (bounce and complaint reports, auto-reply detection, threading, intent)
starts from :class:`ParsedMessage`. The stdlib ``email`` package does the MIME work, and
:mod:`email_sender.inbound.mime` walks the tree and finds the best text; this module adds what
a receiving service needs on top: it never raises on a broken message (mail from the wide world
is often malformed), it records what was wrong as ``defects``, it caps what it keeps, and it
gives a stable ``dedupe_key`` so the same message delivered twice is stored once. Subjects and
message ids are normalised here too, for threading.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC
from email.message import EmailMessage, Message
from email.parser import HeaderParser, Parser
from typing import Any

from email_sender.errors import PayloadTooLarge, ValidationError
from email_sender.inbound.mime import Defects, best_text, clean_text, iter_parts

MAX_HEADERS = 500
MAX_HEADER_VALUE_CHARS = 8_192
# What reaches the stdlib header parser (see _bounded_header_block).
MAX_HEADER_FIELD_BYTES = 16 * 1024
MAX_HEADER_BLOCK_BYTES = 128 * 1024
MAX_REFERENCES = 100

# Headers that any real message (bounces included) carries at least one of; a header block
# with none of them is more likely garbage than mail.
_MESSAGE_HEADERS = frozenset(
    {
        "from",
        "sender",
        "message-id",
        "subject",
        "date",
        "to",
        "return-path",
        "received",
        "content-type",
        "mime-version",
    }
)
_FIELD_NAME = re.compile(rb"[!-9;-~]+[ \t]*:")
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,1000})>")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_SPACES = re.compile(r"\s+")
# One leading reply/forward prefix ("Re:", "RE :", "Fwd:", "AW:", "Réf. :", "Re[2]:") or one
# "[tag]"; anchored and applied from a moving position, so stripping stays linear.
_SUBJECT_PREFIX = re.compile(
    r"\s*(?:(?:re|fwd?|tr|aw|wg|rv|r[ée]f|sv|antw|enc)\.?\s*(?:\[\d{1,4}\]|\(\d{1,4}\))?\s*:"
    r"|\[[^\[\]]{0,200}\])",
    re.IGNORECASE,
)
_POLICY = email.policy.default


@dataclass(frozen=True)
class ParsedMessage:
    """What a received message says, decoded and capped."""

    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    from_addr: str | None
    from_name: str | None
    to_addrs: list[str]
    subject: str
    date: float | None
    return_path: str | None
    headers: list[tuple[str, str]]
    text: str
    html: str | None
    defects: list[str]
    size: int
    content_hash: str
    dedupe_key: str
    message: EmailMessage

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def parse_message(raw: bytes, *, max_bytes: int) -> ParsedMessage:
    """Read ``raw``; raise ValidationError only when it is too large or not a message at all."""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            "message",
            f"{len(raw)} bytes is over the limit of {max_bytes} bytes",
            size=len(raw),
            limit=max_bytes,
        )
    header_block, separator, body = _split_header_block(raw)
    _check_is_message(header_block)
    defects = Defects()
    header_block = _bounded_header_block(header_block, defects)
    message = _parse_tree(header_block, separator, body, defects)
    headers = _decoded_headers(message, defects)
    text, html = best_text(message, defects)
    for part in iter_parts(message):
        defects.add_all(part.defects)
    content_hash = hashlib.sha256(body).hexdigest()
    message_id = normalise_message_id(_header_text(message, "Message-ID"))
    from_name, from_addr = _first_address(message, "From")
    return ParsedMessage(
        message_id=message_id,
        in_reply_to=message_ids(_header_text(message, "In-Reply-To")),
        references=message_ids(_header_text(message, "References")),
        from_addr=from_addr,
        from_name=from_name,
        to_addrs=_addresses(message, ("To", "Cc")),
        subject=_clean_subject(_header_text(message, "Subject") or ""),
        date=_epoch_seconds(_header_text(message, "Date")),
        return_path=_return_path(_header_text(message, "Return-Path")),
        headers=headers,
        text=text,
        html=html,
        defects=defects.names,
        size=len(raw),
        content_hash=content_hash,
        dedupe_key=hashlib.sha256(f"{message_id or ''}\0{content_hash}".encode()).hexdigest(),
        message=message,
    )


def normalise_subject(subject: str) -> str:
    """The subject without reply/forward prefixes and [tags], case-folded, spaces collapsed."""
    position = 0
    while match := _SUBJECT_PREFIX.match(subject, position):
        if match.end() == position:
            break
        position = match.end()
    return _SPACES.sub(" ", subject[position:]).strip().casefold()


def normalise_message_id(value: str | None) -> str | None:
    """The first ``<id>`` in a Message-ID value; a bare id gets its angle brackets back."""
    if not value:
        return None
    if match := _MESSAGE_ID.search(value):
        return f"<{match.group(1)}>"
    bare = value.strip().split()
    return f"<{bare[0].strip('<>')}>" if bare and bare[0].strip("<>") else None


def message_ids(value: str | None) -> list[str]:
    """Every ``<id>`` of an In-Reply-To or References value (bare ids with an @ accepted)."""
    if not value:
        return []
    found = [f"<{match.group(1)}>" for match in _MESSAGE_ID.finditer(value)]
    if not found:
        found = [f"<{token.strip('<>')}>" for token in value.split() if "@" in token]
    return list(dict.fromkeys(found))[:MAX_REFERENCES]


def _split_header_block(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, blank-line separator, body); the body is empty when there is no blank line."""
    found = [(index, sep) for sep in (b"\r\n\r\n", b"\n\n") if (index := raw.find(sep)) >= 0]
    if not found:
        return raw, b"", b""
    index, separator = min(found)
    return raw[:index], separator, raw[index + len(separator) :]


def _bounded_header_block(header_block: bytes, defects: Defects) -> bytes:
    """The header block with each field (folded lines included) cut to
    ``MAX_HEADER_FIELD_BYTES`` and fields past ``MAX_HEADER_BLOCK_BYTES`` left out.

    The stdlib header parser takes tens of microseconds per byte of one field: a 3 MB folded
    header would hold a thread for minutes. The raw source keeps everything.
    """
    if len(header_block) <= MAX_HEADER_FIELD_BYTES:
        return header_block
    fields: list[bytes] = []
    for line in header_block.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            if len(fields[-1]) + len(line) > MAX_HEADER_FIELD_BYTES:
                defects.add("HeaderTooLongDefect")
                continue
            fields[-1] += line
        else:
            fields.append(line[:MAX_HEADER_FIELD_BYTES])
            if len(line) > MAX_HEADER_FIELD_BYTES:
                defects.add("HeaderTooLongDefect")
    kept: list[bytes] = []
    size = 0
    for field in fields:
        if size + len(field) > MAX_HEADER_BLOCK_BYTES:
            defects.add("HeaderBlockTooLongDefect")
            break
        kept.append(field if field.endswith((b"\n", b"\r")) else field + b"\r\n")
        size += len(kept[-1])
    return b"".join(kept).rstrip(b"\r\n")


def _check_is_message(header_block: bytes) -> None:
    lines = header_block.lstrip(b"\r\n").splitlines()
    if lines and lines[0].startswith(b"From "):  # an mbox "From " envelope line
        lines = lines[1:]
    if not lines or not _FIELD_NAME.match(lines[0]):
        raise ValidationError("message", "not an email message: no header block")
    names = {
        match.group(0).rstrip(b": \t").lower().decode("ascii")
        for line in lines
        if (match := _FIELD_NAME.match(line))
    }
    if not names & _MESSAGE_HEADERS:
        raise ValidationError(
            "message", "not an email message: none of From, Message-ID, Subject, Date, To"
        )


def _parse_tree(
    header_block: bytes, separator: bytes, body: bytes, defects: Defects
) -> EmailMessage:
    """Parse with ``email``, top-level 8-bit header bytes read as UTF-8, else latin-1.

    ``BytesParser`` would read them as unknown bytes and show U+FFFD; decoding them first and
    handing the rest over as surrogate-escaped ASCII is what ``BytesParser`` does for the body.
    """
    headers_text = _decode_header_block(header_block, defects)
    text = headers_text + separator.decode("ascii") + body.decode("ascii", "surrogateescape")
    try:
        message = Parser(policy=_POLICY).parsestr(text)
    except Exception:  # the feedparser can overflow the stack on absurdly deep nesting
        defects.add("UnparseableBodyDefect")
        message = HeaderParser(policy=_POLICY).parsestr(text)
    assert isinstance(message, EmailMessage)  # the default policy's message factory
    return message


def _decode_header_block(header_block: bytes, defects: Defects) -> str:
    try:
        return header_block.decode("ascii")
    except UnicodeDecodeError:
        defects.add("EightBitHeaderDefect")
    lines = header_block.split(b"\n")
    decoded: list[str] = []
    for index, line in enumerate(lines):
        is_mbox_line = index == 0 and line.startswith(b"From ")
        is_header_line = _FIELD_NAME.match(line) or line[:1] in (b" ", b"\t") or is_mbox_line
        if not is_header_line:
            # The parser ends the headers here and reads the rest as body: leave those bytes
            # surrogate-escaped, as the body's are, so that decoding the payload still works.
            rest = b"\n".join(lines[index:])
            decoded.append(rest.decode("ascii", "surrogateescape"))
            break
        try:
            decoded.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            decoded.append(line.decode("latin-1"))
    return "\n".join(decoded)


def _decoded_headers(message: Message, defects: Defects) -> list[tuple[str, str]]:
    decoded: list[tuple[str, str]] = []
    for name, raw_value in message.raw_items():
        if len(decoded) >= MAX_HEADERS:
            defects.add("TooManyHeadersDefect")
            break
        try:
            header = _POLICY.header_fetch_parse(name, raw_value)
            defects.add_all(getattr(header, "defects", ()))
            value = str(header)
        except Exception:  # the header parser has corner cases that raise; keep the raw text
            defects.add("UnreadableHeaderDefect")
            value = _SPACES.sub(" ", str(raw_value))
        decoded.append((clean_text(str(name)), clean_text(value[:MAX_HEADER_VALUE_CHARS])))
    return decoded


def _header(message: Message, name: str) -> Any:
    try:
        return message.get(name)
    except Exception:  # a header the parser cannot model; _decoded_headers recorded it
        return None


def _header_text(message: Message, name: str) -> str | None:
    header = _header(message, name)
    if header is None:
        try:
            raw = next((value for key, value in message.raw_items() if key.lower() == name.lower()))
        except StopIteration:
            return None
        header = _SPACES.sub(" ", str(raw))
    return clean_text(str(header)[:MAX_HEADER_VALUE_CHARS])


def _header_addresses(message: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs of every ``name`` header."""
    pairs: list[tuple[str, str]] = []
    try:
        headers = message.get_all(name) or []
    except Exception:  # unparseable address list: fall back to the lenient parseaddr
        headers = [value for key, value in message.raw_items() if key.lower() == name.lower()]
    for header in headers:
        addresses = getattr(header, "addresses", None)
        if addresses:
            pairs += [(address.display_name, address.addr_spec) for address in addresses]
        else:
            pairs += email.utils.getaddresses([str(header)])
    return [
        (clean_text(name), clean_text(addr).lower()) for name, addr in pairs if addr and "@" in addr
    ]


def _first_address(message: Message, name: str) -> tuple[str | None, str | None]:
    pairs = _header_addresses(message, name)
    if not pairs:
        return None, None
    display_name, address = pairs[0]
    return display_name or None, address


def _addresses(message: Message, names: tuple[str, ...]) -> list[str]:
    found = [address for name in names for _, address in _header_addresses(message, name)]
    return list(dict.fromkeys(found))


def _return_path(value: str | None) -> str | None:
    """ "" for the null sender ``<>``, the lower-cased address otherwise, None when absent."""
    if value is None:
        return None
    _, address = email.utils.parseaddr(value)
    return (address or value).strip("<> \t").lower()


def _epoch_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # "-0000": the zone is unknown; UTC is the documented reading
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _clean_subject(subject: str) -> str:
    return _SPACES.sub(" ", _CONTROL_CHARS.sub(" ", subject)).strip()
