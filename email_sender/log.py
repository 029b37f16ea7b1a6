"""JSON logging: one event per line, to rotated files and to stderr.

Modules log events, not prose: ``logger.info("email_sent", extra={"email_id": ..., ...})``.
The first argument is the stable event name; ``extra`` carries the fields. Each line has
``timestamp, level, component, event, message, request_id, duration_ms`` and the given fields.
Every line goes through :func:`~email_sender.settings.mask_secrets` last, so a URL password in a
message, a field or a library's traceback never reaches a file or the terminal.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from email_sender.settings import mask_secrets

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

LOG_FILE = "email-sender.log"
ERROR_LOG_FILE = "email-sender-error.log"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def component_of(logger_name: str) -> str:
    """``email_sender.mail.worker`` → ``mail.worker``; other libraries keep their name."""
    return logger_name.removeprefix("email_sender.") if logger_name != "email_sender" else "core"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "component": fields.pop("component", None) or component_of(record.name),
            "event": fields.pop("event", None) or _event_name(record),
            "message": record.getMessage(),
            "request_id": fields.pop("request_id", None) or request_id_var.get(),
            "duration_ms": fields.pop("duration_ms", None),
        }
        entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask_secrets(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """For a person at a terminal: time, level, component, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}
        extras = " ".join(f"{key}={value}" for key, value in fields.items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {component_of(record.name)}: "
        line += record.getMessage() + (f" {extras}" if extras else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask_secrets(line)


def _event_name(record: logging.LogRecord) -> str:
    message = str(record.msg)
    return message if message.isidentifier() else "log"


def setup_logging(
    *,
    level: str = "INFO",
    log_dir: Path | None = None,
    json_format: bool = True,
    max_bytes: int = 20 * 1024 * 1024,
    backup_count: int = 5,
    stderr: bool = True,
) -> None:
    """Configure the root logger once: files under ``log_dir`` (when given) and stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    formatter: logging.Formatter = JsonFormatter() if json_format else TextFormatter()
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        for name, threshold in ((LOG_FILE, logging.DEBUG), (ERROR_LOG_FILE, logging.WARNING)):
            handler = logging.handlers.RotatingFileHandler(
                log_dir / name, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
            )
            handler.setLevel(threshold)
            handler.setFormatter(JsonFormatter())
            root.addHandler(handler)
    if stderr:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(formatter)
        root.addHandler(console)
    # Access lines come from our own middleware, with the request id.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, root.level))
    for noisy in ("httpx", "httpcore", "aiosqlite", "mail.log", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
