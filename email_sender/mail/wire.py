"""The bytes an SMTP relay receives for a plain email, written without the email package.

Building an :class:`~email.message.EmailMessage` and flattening it parses every header value
and folds it again: about half the CPU a delivery costs. Most emails need none of it: one text
or HTML part, ASCII throughout, every line short. For those, :func:`simple_wire_form` writes the
same bytes directly; for everything else it answers None and the email package does the work.

"The same bytes" is a promise kept by refusing anything the email package would rewrite:
encoded words, quoting, folding, long lines, non-ASCII, headers with their own parser. The
tests compare both paths byte for byte on generated emails.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime

from email_sender.mail.message import PreparedEmail

# Header lines longer than this are folded by the email package (policy max_line_length).
MAX_LINE = 78

# Headers the email package parses with a header class of its own; the rest are unstructured.
_PARSED_HEADERS = frozenset(
    {"bcc", "cc", "content-disposition", "content-transfer-encoding", "content-type", "date",
     "from", "message-id", "mime-version", "orig-date", "reply-to", "resent-bcc", "resent-cc",
     "resent-date", "resent-from", "resent-sender", "resent-to", "sender", "subject", "to"}
)
_ATOM = r"[A-Za-z0-9_'+-]+"
_ADDR_SPEC = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
# A bare address, or a display name of plain words (nothing to quote) and the address.
_ADDRESS = re.compile(rf"(?:{_ATOM}(?: {_ATOM})* <{_ADDR_SPEC}>|{_ADDR_SPEC})")
_MESSAGE_ID = re.compile(rf"<{_ADDR_SPEC}>")
# Printable words between single spaces: nothing to fold, trim or decode.
_UNSTRUCTURED = re.compile(r"(?:[\x21-\x7e]+(?: [\x21-\x7e]+)*)?")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
_BODY = re.compile(r"[\x20-\x7e\t\r\n]*")


def simple_wire_form(email: PreparedEmail, *, date: datetime | None = None) -> bytes | None:
    """The message as sent (CRLF line ends, 7-bit), or None when the email package must build it.

    The bytes equal ``build_mime(email)`` flattened for SMTP, for any relay: nothing in them
    needs SMTPUTF8 or 8BITMIME.
    """
    if email.attachments or (email.text is not None) == (email.html is not None):
        return None
    subtype, body = ("plain", email.text) if email.text is not None else ("html", email.html)
    assert body is not None
    lines: list[str] = []
    try:
        headers = _headers(email, date)
    except _NotSimple:
        return None
    for name, value in headers:
        line = f"{name}: {value}" if value else f"{name}:"
        if len(line) > MAX_LINE:
            return None
        lines.append(line)
    content = _body_lines(body)
    if content is None:
        return None
    lines += [f'Content-Type: text/{subtype}; charset="utf-8"',
              "Content-Transfer-Encoding: 7bit", "MIME-Version: 1.0", "", *content]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _headers(email: PreparedEmail, date: datetime | None) -> list[tuple[str, str]]:
    """The header lines in build_mime's order; any value outside the plain forms raises."""
    headers = [("From", _addresses([email.from_addr]))]
    if email.to:
        headers.append(("To", _addresses(email.to)))
    if email.cc:
        headers.append(("Cc", _addresses(email.cc)))
    if email.reply_to:
        headers.append(("Reply-To", _addresses([email.reply_to])))
    headers.append(("Subject", _unstructured(email.subject)))
    headers.append(("Date", format_datetime(date or datetime.now(UTC))))
    if not _MESSAGE_ID.fullmatch(email.message_id):
        raise _NotSimple
    headers.append(("Message-ID", email.message_id))
    for name, value in email.headers.items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _PARSED_HEADERS:
            raise _NotSimple
        headers.append((name, _unstructured(value)))
    return headers


class _NotSimple(Exception):
    """A value the email package would rewrite."""


def _addresses(values: list[str]) -> str:
    if not all(_ADDRESS.fullmatch(value) for value in values):
        raise _NotSimple
    return ", ".join(values)


def _unstructured(value: str) -> str:
    if "=?" in value or not _UNSTRUCTURED.fullmatch(value):
        raise _NotSimple
    return value


def _body_lines(body: str) -> list[str] | None:
    """The body's lines as the email package cuts them (at CR, LF or CRLF), if all are plain
    ASCII and short enough for 7bit."""
    if not _BODY.fullmatch(body):
        return None
    lines = body.splitlines()
    if any(len(line) > MAX_LINE for line in lines):
        return None
    # An empty body is still one (empty) line.
    return lines or [""]
