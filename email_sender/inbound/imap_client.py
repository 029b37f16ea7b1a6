"""The blocking IMAP client: one logged-in session and the translation of its errors to ours.

``imapclient`` blocks on its socket: every method of :class:`ImapConnection` is meant to run in
a worker thread, bounded by the socket timeout given to :meth:`ImapConnection.open`. Its errors
(and imaplib's and the socket's) become ours in :func:`translate_imap_errors`, here and only
here; the poller above (:mod:`email_sender.inbound.imap`) sees MailboxUnavailable,
MailboxAuthFailed and FolderUnavailable, never a library's exception.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from email_sender.errors import (
    ConfigError,
    FolderUnavailable,
    MailboxAuthFailed,
    MailboxUnavailable,
)

# How often an IDLE looks up from the socket to ask ``interrupted()`` whether the caller (the
# poller's stop() or poll_once()) wants the connection back.
IDLE_SLICE_SECONDS = 0.5


@dataclass(frozen=True)
class ImapAddress:
    """Where a mailbox is: host, port, TLS or not, and the credentials the URL carried."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @property
    def safe_url(self) -> str:
        """The URL without credentials, fit for logs and answers."""
        return f"{'imaps' if self.tls else 'imap'}://{self.host}:{self.port}"


def parse_imap_url(url: str) -> ImapAddress:
    """``imap://host[:143]`` (plain) or ``imaps://host[:993]`` (TLS); credentials optional."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname:
        raise ConfigError("inbound.imap.url: expected imap://host:port or imaps://host:port")
    tls = parts.scheme == "imaps"
    try:
        port = parts.port or (993 if tls else 143)
    except ValueError as exc:
        raise ConfigError(f"inbound.imap.url: {exc}") from exc
    return ImapAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@contextmanager
def translate_imap_errors(address: ImapAddress, folder: str | None = None) -> Iterator[None]:
    """imapclient, imaplib and socket errors as ours: a refused login, a broken connection
    (reconnect), or a refusal about one folder (the others go on)."""
    try:
        yield
    except LoginError as exc:
        raise MailboxAuthFailed(
            f"authentication failed at {address.safe_url}: {_text(exc)}", url=address.safe_url
        ) from exc
    except (IMAPClientAbortError, OSError) as exc:
        raise MailboxUnavailable(
            f"IMAP connection to {address.safe_url} failed: {_text(exc) or type(exc).__name__}",
            url=address.safe_url,
        ) from exc
    except IMAPClientError as exc:
        if folder is None:
            raise MailboxUnavailable(
                f"IMAP server {address.safe_url} refused: {_text(exc)}", url=address.safe_url
            ) from exc
        raise FolderUnavailable(
            f"IMAP folder {folder!r} at {address.safe_url}: {_text(exc)}", folder=folder
        ) from exc


def _text(error: BaseException) -> str:
    text = str(error)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]  # imaplib quotes the server's bytes
    return text


class ImapConnection:
    """One logged-in IMAP session. Every method blocks: call them from a worker thread."""

    def __init__(self, client: IMAPClient, address: ImapAddress, *, idle_supported: bool) -> None:
        self.client = client
        self.address = address
        self.idle_supported = idle_supported
        self.folder: str | None = None

    @classmethod
    def open(
        cls, address: ImapAddress, username: str, password: str, timeout: float
    ) -> ImapConnection:
        with translate_imap_errors(address):
            client = IMAPClient(address.host, port=address.port, ssl=address.tls, timeout=timeout)
            try:
                if not address.tls and client.has_capability("STARTTLS"):
                    # Never send the password in clear when the server can encrypt first.
                    client.starttls(ssl.create_default_context())
                client.login(username, password)
                idle_supported = bool(client.has_capability("IDLE"))
            except BaseException:
                with contextlib.suppress(Exception):
                    client.shutdown()
                raise
        return cls(client, address, idle_supported=idle_supported)

    def examine(self, folder: str) -> int:
        """Open ``folder`` read-only; answer its UIDVALIDITY."""
        self.folder = None
        with translate_imap_errors(self.address, folder):
            status = self.client.select_folder(folder, readonly=True)
        self.folder = folder
        return int(status[b"UIDVALIDITY"])

    def new_uids(self, after_uid: int) -> list[int]:
        """UIDs above ``after_uid`` in the open folder, ascending."""
        with translate_imap_errors(self.address, self.folder):
            found = self.client.search(["UID", f"{after_uid + 1}:*"])
        # "N:*" always matches the last message, even when its UID is below N.
        return sorted(int(uid) for uid in found if int(uid) > after_uid)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """RFC822.SIZE of each UID still there (an expunged one is absent)."""
        with translate_imap_errors(self.address, self.folder):
            fetched = self.client.fetch(list(uids), ["RFC822.SIZE"])
        wanted = set(uids)
        return {
            int(uid): int(data[b"RFC822.SIZE"])
            for uid, data in fetched.items()
            if uid in wanted and b"RFC822.SIZE" in data
        }

    def bodies(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw messages, read with BODY.PEEK[] so that no \\Seen flag is set."""
        with translate_imap_errors(self.address, self.folder):
            fetched = self.client.fetch(list(uids), ["BODY.PEEK[]"])
        wanted = set(uids)
        return {
            int(uid): bytes(data[b"BODY[]"])
            for uid, data in fetched.items()
            if uid in wanted and data.get(b"BODY[]") is not None
        }

    def wait_for_news(
        self, after_uid: int, seconds: float, interrupted: Callable[[], bool]
    ) -> bool:
        """IDLE on the open folder until a message arrives (True), ``seconds`` pass or
        ``interrupted()`` says so (False)."""
        # A message that arrived during the round's FETCHes was announced in their answers,
        # which imapclient does not show: look once more before idling.
        if self.new_uids(after_uid):
            return True
        deadline = time.monotonic() + seconds
        with translate_imap_errors(self.address, self.folder):
            self.client.idle()
            try:
                while not interrupted():
                    slice_seconds = min(IDLE_SLICE_SECONDS, deadline - time.monotonic())
                    if slice_seconds <= 0:
                        return False
                    started = time.monotonic()
                    answers = self.client.idle_check(timeout=slice_seconds)
                    if any(_calls_for_a_round(answer) for answer in answers):
                        return True
                    if not answers and time.monotonic() - started < slice_seconds / 2:
                        # The socket woke with nothing to read: imapclient hides an end of
                        # stream this way. Leaving IDLE finds out (and fails if it is closed).
                        return True
                return False
            finally:
                self.client.idle_done()

    def logout(self) -> None:
        with translate_imap_errors(self.address):
            self.client.logout()

    def shutdown(self) -> None:
        """Close the socket at once (unblocks a thread still reading it)."""
        with contextlib.suppress(Exception):
            self.client.shutdown()


def _calls_for_a_round(answer: Any) -> bool:
    """A new message (EXISTS, RECENT) or the server leaving (BYE)."""
    if not isinstance(answer, tuple) or not answer:
        return False
    return answer[0] == b"BYE" or (len(answer) >= 2 and answer[1] in (b"EXISTS", b"RECENT"))
