"""A real dovecot IMAP server for the tests: started in the foreground, everything in a temp dir.

No system service and no system configuration: the config file, the sockets (``base_dir``), the
state, the log and the maildirs all live in one temporary directory that is removed at stop.
Users log in with a plain password (``secret``) over plain IMAP on 127.0.0.1.

Dovecot refuses mail access as root, so when the tests run as root (here and in CI) the mail
processes run as ``nobody`` and the temp dir is opened to it. One server serves a test module;
each test gets a new user, so an empty mailbox, in a few milliseconds.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest
from imapclient import IMAPClient

from tests.conftest import free_port

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")  # same package (dovecot-core)
START_SECONDS = 10.0
STOP_SECONDS = 5.0
TIMEOUT_SECONDS = 10.0

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# A refused login answers at once (the default waits 2 s, against password guessing); the
# penalty on repeated failures from one address stays.
auth_failure_delay = 0
default_internal_user = {login_user}
default_login_user = {login_user}
default_internal_group = {login_group}
mail_location = maildir:{root}/mail/%u
mail_uid = {mail_uid}
mail_gid = {mail_gid}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users/%u
}}
userdb {{
  driver = passwd-file
  args = {root}/users/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


@dataclass
class Mailbox:
    """One user's mailbox on a running dovecot, and what a mail server would do to it."""

    host: str
    port: int
    user: str
    password: str
    server: Dovecot = field(repr=False)

    @property
    def url(self) -> str:
        return f"imap://{self.host}:{self.port}"

    def client(self) -> IMAPClient:
        """A logged-in client (the caller logs out)."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=TIMEOUT_SECONDS)
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self._session() as client:
            client.append(folder, raw)

    def append_all(self, raws: list[bytes], folder: str = "INBOX") -> None:
        """Append many messages over one session (a backlog)."""
        with self._session() as client:
            for raw in raws:
                client.append(folder, raw)

    def create_folder(self, name: str) -> None:
        with self._session() as client:
            client.create_folder(name)

    def delete_folder(self, name: str) -> None:
        with self._session() as client:
            client.delete_folder(name)

    def kick(self) -> None:
        """Close every IMAP connection of this user, as a server restart would."""
        self.server.doveadm("kick", self.user)

    @contextmanager
    def _session(self) -> Iterator[IMAPClient]:
        client = self.client()
        try:
            yield client
        finally:
            client.logout()


class Dovecot:
    """A dovecot on a free port of 127.0.0.1; ``with Dovecot() as server:`` starts and stops it.

    Users are added while it runs, each in a passwd-file of its own (``users/%u``: dovecot
    reads a changed file at most once a second, a new file at once), so tests can share one
    server and still each start from an empty mailbox.
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._users = 0

    def start(self) -> Dovecot:
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.port = free_port()
        self._write_config(self.root)
        self.process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_SECONDS)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def add_user(self, password: str = "secret") -> Mailbox:
        """A new user with an empty mailbox."""
        assert self.root is not None, "start the server first"
        self._users += 1
        user = f"user{self._users}"
        (self.root / "users" / user).write_text(
            f"{user}:{{PLAIN}}{password}::::{self.root}/mail/{user}::\n"
        )
        return Mailbox(self.host, self.port, user, password, server=self)

    def doveadm(self, *arguments: str) -> str:
        assert self.root is not None, "start the server first"
        done = subprocess.run(
            [str(DOVEADM), "-c", str(self.root / "dovecot.conf"), *arguments],
            capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(arguments)}: {done.stderr.strip()}")
        return done.stdout

    def log_tail(self, lines: int = 30) -> str:
        if self.root is None or not (self.root / "dovecot.log").exists():
            return "(no log)"
        return "\n".join((self.root / "dovecot.log").read_text().splitlines()[-lines:])

    def _write_config(self, root: Path) -> None:
        mail_uid, mail_gid = os.getuid(), os.getgid()
        login_user = pwd.getpwuid(mail_uid).pw_name
        login_group = login_user
        if mail_uid == 0:
            nobody = pwd.getpwnam("nobody")
            mail_uid, mail_gid = nobody.pw_uid, nobody.pw_gid
            login_user = "nobody"
            login_group = _group_name(nobody.pw_gid)
        for folder in ("run", "state", "mail", "users"):
            (root / folder).mkdir()
        # The login and mail processes run as that user: they must reach the temp dir.
        root.chmod(0o755)
        if os.getuid() == 0:
            os.chown(root / "mail", mail_uid, mail_gid)
        (root / "dovecot.conf").write_text(
            CONFIG.format(
                root=root,
                port=self.port,
                login_user=login_user,
                login_group=login_group,
                mail_uid=mail_uid,
                mail_gid=mail_gid,
            )
        )

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if (
                    self.process.stderr
                ) else ""
                raise RuntimeError(
                    f"dovecot exited with {self.process.returncode}: {stderr}\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(
            f"dovecot did not listen on {self.host}:{self.port} within {START_SECONDS} s\n"
            + self.log_tail()
        )


def _group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name


def dovecot_or_skip() -> Dovecot:
    if not DOVECOT.exists():
        reason = f"{DOVECOT} is not installed (Debian package dovecot-imapd)"
        # CI installs it (.ci/run): there an absent dovecot is a failure, never a skip.
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Dovecot()


@pytest.fixture(scope="module")
def dovecot_server() -> Iterator[Dovecot]:
    """One dovecot for a test module (starting and stopping one takes about a second)."""
    with dovecot_or_skip() as server:
        yield server


@pytest.fixture
def dovecot(dovecot_server: Dovecot) -> Mailbox:
    """An empty mailbox of its own for each test, on the module's dovecot."""
    return dovecot_server.add_user()
