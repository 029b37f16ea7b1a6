"""The configuration tree: a YAML file, overridden by ``EMAIL_SENDER__SECTION__KEY`` variables.

Settings are built by :func:`load_settings`, never at import time. Secrets are ``SecretStr`` and
URLs that may carry a password are ``SecretUrl``, so no repr, log line, error, backup or
``config show`` leaks them: :meth:`Settings.masked` is the one rendering for people and backups,
:func:`mask_secrets` the one scrubber for text that quotes a URL (driver errors, log lines).
Every section forbids unknown keys, so a typo is an error naming its path instead of a silently
ignored value.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import zoneinfo
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal

import email_validator
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from email_sender.errors import ConfigError

ENV_PREFIX = "EMAIL_SENDER__"
DEFAULT_DATA_DIR = Path("data")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Accept 30, 1.5, "30s", "5m", "1h", "7d", "250ms" and return seconds as a float."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("must be a duration such as 30, '30s', '5m', '1h' or '7d'")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


MASK = "**********"

# ``scheme://user:password@host``: the password runs to the last ``@`` before the path, as
# urllib and redis-py read it, so a password holding an unencoded ``@`` is masked whole.
# The scheme is anchored at a word start and bounded, so a long run of letters is not re-scanned
# from every position (this runs on every log line).
_URL_PASSWORD = re.compile(
    r"(?P<head>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^:/@\s'\"]*):[^/\s\"]*@"
)
# DSN query parameters that carry a credential (asyncpg and libpq accept ``?password=``).
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:password|passwd|pass|api_key|apikey|token|secret)=)[^&\s\"]+",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """``text`` with every URL password and credential query parameter replaced by ``MASK``."""
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    return _QUERY_SECRET.sub(rf"\g<head>{MASK}", text)


class SecretUrl(SecretStr):
    """A URL that may carry a password: shown with the password masked, read with
    ``get_secret_value()`` only where a connection is made."""

    def _display(self) -> str:
        return mask_secrets(self.get_secret_value())


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    shutdown_grace: Seconds = 15.0
    # API processes sharing the port (SO_REUSEPORT); more than one for node.role api only.
    workers: int = Field(1, ge=1, le=64)


class MetricsSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8081, ge=0, le=65535)
    path: str = "/metrics"
    debug_endpoints: bool = False

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class DatabaseSettings(Section):
    url: SecretUrl | None = None
    pool_size: int = Field(10, ge=1, le=1000)
    echo: bool = False

    @field_validator("url", mode="before")
    @classmethod
    def _known_driver(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value.split(":///", 1)[1]
        if not (
            value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite://")
        ):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.url is None or self.url.get_secret_value().startswith("sqlite")


class RelaySettings(Section):
    url: str = Field(description="smtp://host:port (STARTTLS when offered) or smtps://host:port")
    username: str | None = None
    password: SecretStr | None = None
    tls: Literal["auto", "starttls", "tls", "none"] = "auto"
    max_connections: int = Field(4, ge=1, le=256)
    rate_per_second: float = Field(0.0, ge=0.0, description="0 means unlimited")
    timeout: Seconds = 30.0

    @field_validator("url")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        if not re.match(r"^smtps?://[^/:\s]+(:\d{1,5})?/?$", value):
            raise ValueError("must look like smtp://host:port or smtps://host:port")
        return value


class CaptureSinkSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(1025, ge=0, le=65535)
    max_messages: int = Field(10_000, ge=1)
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="larger: 552")
    max_stored_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="oldest dropped first")


class SmtpSettings(Section):
    relays: list[RelaySettings] = Field(default_factory=list)
    capture_sink: CaptureSinkSettings = Field(default_factory=CaptureSinkSettings)
    helo_name: str | None = None


class BackoffSettings(Section):
    base: Seconds = 30.0
    factor: float = Field(2.0, ge=1.0)
    max: Seconds = 3600.0
    jitter: float = Field(0.2, ge=0.0, le=1.0)


class DeliverySettings(Section):
    workers: int = Field(4, ge=1, le=256)
    batch_size: int = Field(50, ge=1, le=10_000)
    lease_seconds: Seconds = 60.0
    max_attempts: int = Field(8, ge=1, le=100)
    poll_interval: Seconds = 0.5
    backoff: BackoffSettings = Field(default_factory=BackoffSettings)


class MailSettings(Section):
    """Limits on what the API accepts."""

    max_recipients: int = Field(50, ge=1, le=10_000)
    max_subject_chars: int = Field(998, ge=1)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1)
    max_attachment_bytes: int = Field(10 * 1024 * 1024, ge=0)
    max_attachments: int = Field(10, ge=0)
    max_metadata_bytes: int = Field(8 * 1024, ge=0)
    max_tags: int = Field(20, ge=0)
    allowed_headers: list[str] = Field(
        default_factory=lambda: [
            "X-Campaign",
            "X-Entity-Ref-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "X-Priority",
            "In-Reply-To",
            "References",
        ]
    )
    batch_max: int = Field(500, ge=1, le=10_000)
    idempotency_retention: Seconds = 7 * 86400.0
    default_from: str | None = None


class QdrantSettings(Section):
    # A plain string for the vector client; may hold a password, so kept out of repr and
    # masked by ``Settings.masked`` like every string.
    url: str | None = Field(None, repr=False)
    api_key: SecretStr | None = None
    path: Path | None = None
    prefer_grpc: bool = False
    timeout: Seconds = 10.0


class CollectionSettings(Section):
    emails: str = "emails"
    tasks: str = "task_vectors"


class EmbedderSettings(Section):
    provider: Literal["auto", "local", "openai", "hashing"] = "auto"
    model: str = "all-MiniLM-L6-v2"
    dimension: int | None = Field(None, ge=1, le=65536)
    url: str | None = Field(None, repr=False)  # as qdrant.url
    api_key: SecretStr | None = None
    batch_size: int = Field(64, ge=1, le=4096)
    timeout: Seconds = 30.0


class VectorCacheSettings(Section):
    max_size: int = Field(1000, ge=0)
    ttl: Seconds = 3600.0


SearchLanguage = Literal["da", "de", "en", "es", "fi", "fr", "it", "nl", "no", "pt", "ru", "sv"]


class SearchSettings(Section):
    """Search: the languages emails are analysed in for their exact words (BM25)."""

    languages: list[SearchLanguage] = Field(
        default_factory=lambda: list[SearchLanguage](("fr", "en")), min_length=1
    )


class VectorProcessorSettings(Section):
    """The indexing loop: batches, retries with backoff, when to optimise the embedded store."""

    batch_size: int = Field(64, ge=1, le=4096)
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_base: Seconds = 2.0
    backoff_max: Seconds = 600.0
    outage_backoff_max: Seconds = 30.0
    lease_seconds: Seconds = 120.0
    poll_interval: Seconds = 1.0
    optimize_after: int = Field(1000, ge=1)
    # qdrant-edge-py holds the GIL while it optimises (seconds per 10k points): every coroutine
    # of the process waits, so wait for a quiet spell rather than optimise between two bursts.
    optimize_quiet_seconds: Seconds = 5.0


class DedupeSettings(Section):
    """The near-duplicate guard: hold an email too close to one recently sent to its recipient."""

    enabled: bool = False
    threshold: float = Field(0.95, gt=0.0, le=1.0)
    window_days: float = Field(7.0, gt=0.0)


class ConnectionPoolSettings(Section):
    max_connections: int = Field(10, ge=1, le=1024)
    idle_timeout: Seconds = 300.0


class EventBusSettings(Section):
    backend: Literal["memory", "redis"] = "memory"
    buffer_size: int = Field(10_000, ge=1)
    workers: int = Field(2, ge=1, le=256)
    publish_timeout: Seconds = 0.1
    redis_url: SecretUrl = SecretUrl("redis://127.0.0.1:6379/0")
    stream: str = "email_sender:events"


Scope = Literal["send", "read", "admin"]


class ApiKeySettings(Section):
    """One API key. Give `key` (hashed at load, never kept) or its `key_sha256`."""

    name: str
    key: SecretStr | None = None
    key_sha256: str | None = None
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["send", "read"]))

    @model_validator(mode="after")
    def _hash_key(self) -> ApiKeySettings:
        if self.key is None and self.key_sha256 is None:
            raise ValueError("give either key or key_sha256")
        if self.key is not None:
            digest = hashlib.sha256(self.key.get_secret_value().encode()).hexdigest()
            object.__setattr__(self, "key_sha256", digest)
            object.__setattr__(self, "key", None)
        elif not re.fullmatch(r"[0-9a-f]{64}", self.key_sha256 or ""):
            raise ValueError("key_sha256 must be 64 lowercase hex digits")
        return self


class RateLimitSettings(Section):
    enabled: bool = False
    requests_per_second: float = Field(100.0, gt=0)
    burst: int = Field(200, ge=1)


class SecuritySettings(Section):
    api_keys: list[ApiKeySettings] = Field(default_factory=list)
    blocked_ips: list[str] = Field(default_factory=list)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    # Signs the console's session cookies. Unset, each process draws its own at start, so a
    # restart signs everyone out and several API processes behind one address need it set.
    session_secret: SecretStr | None = None
    session_ttl: float = Field(8 * 3600, gt=0)

    @field_validator("blocked_ips")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an IP address or network") from exc
        return values


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    dir: Path | None = None
    json_format: bool = Field(True, alias="json")
    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    backup_count: int = Field(5, ge=0)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class BackupSettings(Section):
    dir: Path | None = None


class InboundSmtpSettings(Section):
    """The SMTP listener for mail sent to the domains and addresses we own."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=0, le=65535)
    domains: list[str] = Field(
        default_factory=list, description="domains (or full addresses) we accept mail for"
    )
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="larger: 552")


class InboundImapSettings(Section):
    """A mailbox polled over IMAP (IDLE where the server offers it)."""

    url: SecretUrl | None = Field(None, description="imap://host:port or imaps://host:port")
    username: str | None = None
    password: SecretStr | None = None
    folders: list[str] = Field(default_factory=lambda: ["INBOX"])
    interval: Seconds = 60.0
    timeout: Seconds = 30.0


class InboundSettings(Section):
    smtp: InboundSmtpSettings = Field(default_factory=InboundSmtpSettings)
    imap: InboundImapSettings = Field(default_factory=InboundImapSettings)
    verp_domain: str | None = Field(None, description="bounces+<token>@verp_domain on every send")
    verp_secret: SecretStr | None = Field(None, description="signs VERP tokens")
    retention: Seconds = Field(30 * 86400.0, description="how long raw sources are kept")
    max_message_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    soft_bounce_limit: int = Field(3, ge=1, description="soft bounces within the window suppress")
    soft_bounce_window: Seconds = 7 * 86400.0

    @model_validator(mode="after")
    def _verp_is_signed(self) -> InboundSettings:
        if self.verp_domain and self.verp_secret is None:
            raise ValueError("verp_secret is required with verp_domain (it signs the tokens)")
        if self.smtp.max_message_bytes > self.max_message_bytes:
            raise ValueError(
                f"smtp.max_message_bytes ({self.smtp.max_message_bytes}) is over "
                f"max_message_bytes ({self.max_message_bytes}): the listener would take "
                "messages the service then refuses"
            )
        return self


class ClassifierSettings(Section):
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="below: needs_review")
    examples: Path | None = Field(None, description="a folder of extra *.jsonl training examples")


class WebhookSettings(Section):
    timeout: Seconds = 10.0
    allow_private_networks: bool = Field(
        False, description="allow webhook URLs on loopback, private or link-local addresses"
    )
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_base: Seconds = 5.0
    backoff_max: Seconds = 3600.0
    retention: Seconds = Field(
        30 * 86400.0, description="how long finished deliveries stay in the delivery log"
    )


class LifecycleStatus(Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    label: str = Field(min_length=1, max_length=64)


def _booking_statuses() -> list[LifecycleStatus]:
    labels = {
        "new": "Nouveau", "contacted": "Email envoyé", "interested": "Intéressé",
        "negotiating": "Négociation", "confirmed": "Confirmé", "declined": "Refus",
        "done": "Terminé", "unsubscribed": "Désinscrit", "bounced": "Adresse invalide",
    }  # fmt: skip
    return [LifecycleStatus(name=name, label=label) for name, label in labels.items()]


def _booking_transitions() -> dict[str, list[str]]:
    # Any status may end in unsubscribed or bounced (the address decides, not the user).
    return {
        "new": ["contacted", "interested", "negotiating", "confirmed", "declined"],
        "contacted": ["interested", "negotiating", "confirmed", "declined", "new"],
        "interested": ["negotiating", "confirmed", "declined", "contacted"],
        "negotiating": ["interested", "confirmed", "declined"],
        "confirmed": ["done", "negotiating", "declined"],
        "declined": ["contacted", "interested", "negotiating"],
        "done": ["contacted"],
        "bounced": ["new"],
        "unsubscribed": [],
    }


class LifecycleSettings(Section):
    """The statuses a contact moves through and the moves allowed between them."""

    statuses: list[LifecycleStatus] = Field(default_factory=_booking_statuses, min_length=1)
    transitions: dict[str, list[str]] = Field(default_factory=_booking_transitions)
    initial: str = "new"
    # Reached from any status, whatever the transitions say: the address decides.
    always_reachable: list[str] = Field(default_factory=lambda: ["unsubscribed", "bounced"])

    @model_validator(mode="after")
    def _consistent(self) -> LifecycleSettings:
        names = [status.name for status in self.statuses]
        if len(set(names)) != len(names):
            raise ValueError("statuses: a status is named twice")
        known = set(names)
        for where, name in [("initial", self.initial)] + [
            (f"always_reachable ({name})", name) for name in self.always_reachable
        ] + [
            (f"transitions.{source}", target)
            for source, targets in self.transitions.items()
            for target in [source, *targets]
        ]:
            if name not in known:
                raise ValueError(f"{where}: {name!r} is not one of the statuses")
        return self


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


def _office_hours() -> dict[str, list[str]]:
    return {day: ["09:00-18:00"] for day in WEEKDAYS[:5]}


class CapSettings(Section):
    """How much one sender identity and one recipient domain may receive; days and hours are
    counted in ``outreach.timezone``."""

    sender_daily: int = Field(50, ge=1, le=100_000)
    # Per sender identity (bare address): its own daily cap instead of sender_daily.
    senders: dict[str, int] = Field(default_factory=dict)
    domain_hourly: int | None = Field(10, ge=1)
    domain_daily: int | None = Field(50, ge=1)


class GapSettings(Section):
    """A random wait between two sends of one sender, and the least time between two emails of
    one sequence to one contact."""

    min: Annotated[float, BeforeValidator(parse_duration), Field(ge=0)] = 300.0
    max: Annotated[float, BeforeValidator(parse_duration), Field(ge=0)] = 900.0
    contact_min: Annotated[float, BeforeValidator(parse_duration), Field(ge=0)] = 86400.0

    @model_validator(mode="after")
    def _ordered(self) -> GapSettings:
        if self.max < self.min:
            raise ValueError("gap.max must not be below gap.min")
        return self


class WarmupSettings(Section):
    """A new sender's daily cap grows from ``start`` by ``increase`` a day up to the cap."""

    enabled: bool = False
    start: int = Field(10, ge=1)
    increase: int = Field(5, ge=0)


def _reply_statuses() -> dict[str, str]:
    return {
        "interested": "interested", "negotiating": "negotiating", "confirmed": "confirmed",
        "declined": "declined", "question": "interested",
    }  # fmt: skip


class OutreachSettings(Section):
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    # Send windows per weekday, in the contact's time zone: "HH:MM-HH:MM", several allowed.
    windows: dict[str, list[str]] = Field(default_factory=_office_hours)
    timezone: str = Field("UTC", description="for contacts without one, and for counting caps")
    caps: CapSettings = Field(default_factory=CapSettings)
    gap: GapSettings = Field(default_factory=GapSettings)
    warmup: WarmupSettings = Field(default_factory=WarmupSettings)
    # A reply's intent moves its contact to this status (never backwards past a hand-set one).
    reply_statuses: dict[str, str] = Field(default_factory=_reply_statuses)
    # The status a contact in the lifecycle's initial status takes once first written to.
    contacted_status: str | None = "contacted"
    out_of_office_pause: Seconds = Field(7 * 86400.0, description="when no return date is given")
    tick: Seconds = Field(30.0, description="how often the scheduler looks for due steps")
    scheduling: bool = Field(True, description="run the scheduler where delivery runs")
    unsubscribe_url: str | None = Field(
        None, description="public base of one-click links, such as https://mail.example.org/u/"
    )
    unsubscribe_secret: SecretStr | None = Field(None, description="signs unsubscribe tokens")

    @model_validator(mode="after")
    def _sending_rules(self) -> OutreachSettings:
        for day, spans in self.windows.items():
            if day not in WEEKDAYS:
                raise ValueError(f"windows: {day!r} is not one of {', '.join(WEEKDAYS)}")
            for span in spans:
                match = _WINDOW.match(span)
                if match is None or match.group(1, 2) >= match.group(3, 4):
                    raise ValueError(f"windows.{day}: {span!r} is not HH:MM-HH:MM, start first")
        if not any(self.windows.values()):
            raise ValueError("windows: at least one day needs a window")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"timezone: {self.timezone!r} is not an IANA time zone") from exc
        known = {status.name for status in self.lifecycle.statuses}
        for intent, status in self.reply_statuses.items():
            if status not in known:
                raise ValueError(f"reply_statuses.{intent}: {status!r} is not a lifecycle status")
        if self.contacted_status is not None and self.contacted_status not in known:
            raise ValueError(f"contacted_status: {self.contacted_status!r} is not a status")
        return self

    @model_validator(mode="after")
    def _links_are_signed(self) -> OutreachSettings:
        if self.unsubscribe_url and self.unsubscribe_secret is None:
            raise ValueError("unsubscribe_secret is required with unsubscribe_url (it signs links)")
        if self.unsubscribe_url and not self.unsubscribe_url.startswith(("https://", "http://")):
            raise ValueError("unsubscribe_url must be an http(s) URL")
        return self


def _address(value: str) -> str:
    """A bare address (``ops@example.org``) or ``Name <ops@example.org>``, checked."""
    address = parseaddr(value)[1]
    try:
        email_validator.validate_email(address, check_deliverability=False, allow_smtputf8=True)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an email address ({exc})") from exc
    return value


Address = Annotated[str, AfterValidator(_address)]
NonNegativeSeconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class EscalationLevelSettings(Section):
    """A level an alert reaches after firing ``after`` seconds; ``to`` is told from then on."""

    after: Seconds
    to: list[Address] = Field(default_factory=list)


class EscalationSettings(Section):
    """Level 1 is ``alerts.to`` (on-call: restarts, logs, connectivity); level 2 adds the
    infrastructure people (database, Qdrant, network, deploys); level 3 the maintainers (data
    corruption, complex performance problems, security)."""

    level_2: EscalationLevelSettings = Field(
        default_factory=lambda: EscalationLevelSettings(after=1800.0)
    )
    level_3: EscalationLevelSettings = Field(
        default_factory=lambda: EscalationLevelSettings(after=7200.0)
    )

    @model_validator(mode="after")
    def _ordered(self) -> EscalationSettings:
        if self.level_3.after <= self.level_2.after:
            raise ValueError("level_3.after must be later than level_2.after")
        return self


class AlertSettings(Section):
    """Self-alerting: the node checks the runbook's thresholds and mails each alert episode
    through its own outbox (suppressions and retries apply)."""

    enabled: bool = False
    to: list[Address] = Field(default_factory=list, description="level 1: the on-call list")
    sender: Address | None = Field(None, description="the From of alert mail")
    interval: Seconds = Field(30.0, description="how often the checks run")
    window: Seconds = Field(300.0, description="rates and p95 over this span, as the rules' [5m]")
    cooldown: Seconds = Field(3600.0, description="between two mails of a still-firing alert")
    pending: NonNegativeSeconds | None = Field(
        None, description="how long a check fails before it fires; null: each rule's for:"
    )
    resolve_after: NonNegativeSeconds = Field(
        60.0, description="how long a check stays ok before its alert is resolved"
    )
    memory_limit: int = Field(
        2 * 1024**3, ge=1024**2,
        description="bytes; = MemoryMax and email_sender:memory_limit_bytes of the rules",
    )
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)

    @model_validator(mode="after")
    def _recipients(self) -> AlertSettings:
        if self.enabled and not self.to:
            raise ValueError("to: give at least one address when alerts are enabled")
        if self.enabled and self.sender is None:
            raise ValueError("sender: required when alerts are enabled (the From of alert mail)")
        return self


class NodeSettings(Section):
    heartbeat_interval: Seconds = 5.0
    stale_after: Seconds = 30.0
    role: Literal["all", "api", "delivery", "vectors"] = "all"


class Settings(BaseSettings):
    """The whole configuration; see ``config/example.yaml`` for every key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = DEFAULT_DATA_DIR
    server: ServerSettings = Field(default_factory=ServerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    collections: CollectionSettings = Field(default_factory=CollectionSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    vector_cache: VectorCacheSettings = Field(default_factory=VectorCacheSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    vector_processor: VectorProcessorSettings = Field(default_factory=VectorProcessorSettings)
    dedupe: DedupeSettings = Field(default_factory=DedupeSettings)
    connection_pool: ConnectionPoolSettings = Field(default_factory=ConnectionPoolSettings)
    event_bus: EventBusSettings = Field(default_factory=EventBusSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    node: NodeSettings = Field(default_factory=NodeSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    outreach: OutreachSettings = Field(default_factory=OutreachSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments; the environment overrides them.
        return (env_settings, init_settings)

    @property
    def database_url(self) -> str:
        """The real URL, password included: for making connections, never for showing."""
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.data_dir / 'email-sender.db'}"

    @property
    def qdrant_path(self) -> Path:
        return self.qdrant.path or self.data_dir / "qdrant"

    @property
    def log_dir(self) -> Path:
        return self.logging.dir or self.data_dir / "logs"

    @property
    def backup_dir(self) -> Path:
        return self.backup.dir or self.data_dir / "backups"

    @property
    def uses_capture_sink(self) -> bool:
        return not self.smtp.relays and self.smtp.capture_sink.enabled

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data for people and backups: secrets shown as
        ``MASK``, URLs with their password masked (the one rendering ``config show`` and
        backups use)."""
        data = _masked_value(self.model_dump(mode="python", by_alias=True))
        data["database"]["url"] = mask_secrets(self.database_url)
        return data


def _masked_value(value: Any) -> Any:
    if isinstance(value, SecretUrl):
        return str(value)
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {key: _masked_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked_value(item) for item in value]
    if isinstance(value, str):
        # Any other string may be a URL someone wrote a password into (qdrant.url, ...).
        return mask_secrets(value)
    if isinstance(value, Path):
        return str(value)
    return value


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required",
}


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(root)"
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind in _MESSAGES:
        reason = _MESSAGES[kind]
    elif kind == "greater_than_equal":
        reason = f"must be >= {ctx['ge']}"
    elif kind == "greater_than":
        reason = f"must be > {ctx['gt']}"
    elif kind == "less_than_equal":
        reason = f"must be <= {ctx['le']}"
    elif kind == "literal_error":
        reason = f"must be one of {ctx['expected']}"
    else:
        reason = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {reason}"


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, or raise ConfigError naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def load_settings(
    config_path: Path | None = None,
    *,
    data_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build the settings from a YAML file, the environment and explicit overrides.

    Precedence, highest first: ``overrides`` (command-line flags), environment, file, defaults.
    """
    values = read_config_file(config_path) if config_path else {}
    try:
        settings = Settings(**values)
        if data_dir is not None:
            settings.data_dir = data_dir
    except PydanticValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from exc
    for dotted, value in (overrides or {}).items():
        try:
            _assign(settings, dotted, value)
        except PydanticValidationError as exc:
            # An assignment's error knows only the leaf: name the key whole.
            parents = tuple(dotted.split(".")[:-1])
            raise ConfigError([_describe({**error, "loc": (*parents, *error["loc"])})
                               for error in exc.errors()]) from exc
    return settings


def _assign(settings: Settings, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    target: Any = settings
    for part in parents:
        target = getattr(target, part)
    setattr(target, leaf, value)
