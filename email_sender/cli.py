"""The ``email-sender`` command: one thin function per command.

Flags mirror config keys. One top-level handler prints the cause chain of our errors in one line
each and exits non-zero: 1 for a failed check or a bad config, 2 when a port is taken.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
import yaml

from email_sender import __version__
from email_sender.api.workers import check_workers, serve_workers
from email_sender.cli_backup import backup_app, rollback
from email_sender.cli_contacts import contacts_app
from email_sender.cli_monitor import monitor
from email_sender.cli_ops import vectors_ops_commands
from email_sender.cli_vectors import vectors_app
from email_sender.errors import ConfigError, EmailSenderError, PortInUse
from email_sender.log import setup_logging
from email_sender.progress import progress_bar
from email_sender.settings import Settings, load_settings

if TYPE_CHECKING:
    from email_sender.service import Service

logger = logging.getLogger(__name__)

app = typer.Typer(
    name="email-sender",
    help="Self-hosted email delivery with semantic memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)
db_app = typer.Typer(help="The SQL database.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(backup_app, name="backup")
app.command("rollback")(rollback)
app.command("monitor")(monitor)
vectors_ops_commands(vectors_app)
app.add_typer(vectors_app, name="vectors")
app.add_typer(contacts_app, name="contacts")

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file.", envvar="EMAIL_SENDER_CONFIG"),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Folder for the database, vectors and logs.")
]


def _settings(config: Path | None, data_dir: Path | None, **overrides: Any) -> Settings:
    given = {key: value for key, value in overrides.items() if value is not None}
    return load_settings(config, data_dir=data_dir, overrides=given)


def _setup_logging(settings: Settings, *, files: bool = True) -> None:
    setup_logging(
        level=settings.logging.level,
        log_dir=settings.log_dir if files else None,
        json_format=settings.logging.json_format,
        max_bytes=settings.logging.max_bytes,
        backup_count=settings.logging.backup_count,
    )


@app.command()
def serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(help="server.host")] = None,
    port: Annotated[int | None, typer.Option(help="server.port (0: any free port)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="metrics.port")] = None,
    role: Annotated[str | None, typer.Option(help="node.role: all, api, delivery, vectors")] = None,
    log_level: Annotated[str | None, typer.Option(help="logging.level")] = None,
    workers: Annotated[
        int | None, typer.Option(help="server.workers: API processes sharing server.port")
    ] = None,
    reuse_port: Annotated[bool, typer.Option(hidden=True)] = False,
) -> None:
    """Run the service: API, delivery and indexing workers, all managers of the role."""
    settings = _settings(
        config,
        data_dir,
        **{
            "server.host": host,
            "server.port": port,
            "metrics.port": metrics_port,
            "node.role": role,
            "logging.level": log_level,
            "server.workers": workers,
        },
    )
    if reuse_port:  # one of the workers: it serves, whatever server.workers says
        settings.server.workers = 1
    check_workers(settings.server.workers, settings)
    if settings.server.workers > 1:
        sys.exit(serve_workers(settings, settings.server.workers, config))
    _setup_logging(settings)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(settings, reuse_port=reuse_port))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]): a faster event loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(settings: Settings, *, reuse_port: bool = False) -> None:
    from email_sender.api.server import ApiServer
    from email_sender.service import build_service

    # Ports first (API, metrics, capture sink): a taken one is PortInUse, one line, exit 2.
    service = build_service(settings)
    serves_api = service.role in ("all", "api")
    if serves_api or settings.metrics.enabled:
        # Added last so it starts last, but depending on nothing: a degraded node still answers.
        service.add(ApiServer(service, serve_api=serves_api, reuse_port=reuse_port))
    stop = asyncio.Event()
    grace = settings.server.shutdown_grace

    def request_stop() -> None:
        if not stop.is_set():
            _exit_after(grace)
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop)
    if serves_api and not settings.security.api_keys:
        logger.warning(
            "no_api_keys",
            extra={"detail": "no security.api_keys configured: serving on loopback only"},
        )
    starting = asyncio.create_task(service.start(), name="node-start")
    stopping = asyncio.create_task(stop.wait(), name="stop-signal")
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        if starting.exception() is not None:
            await service.stop(timeout=grace * 0.9)
            starting.result()
        _announce(service, settings)
        _freeze_heap()
        await stopping
    else:
        starting.cancel()  # a signal during start: what did start is stopped below
    stopping.cancel()
    logger.info("shutdown_requested", extra={"grace_s": grace})
    # The bound holds whatever the node is doing; _exit_after is the backstop past it.
    await service.stop(timeout=grace * 0.9)


def _freeze_heap() -> None:
    """Leave what start-up built out of every later garbage collection.

    A started node holds some 300,000 objects (modules, the apps, their routes and models) that
    live as long as it does. A full collection walks them all, and under load one came every
    couple of seconds and held the event loop for tens of milliseconds: the slowest requests
    were those that waited for it. Frozen, they are never walked again.
    """
    gc.collect()
    gc.freeze()


def _announce(service: Service, settings: Settings) -> None:
    server = service.get("api") or service.get("metrics")
    ports = server.info() if server is not None else {}
    failing = [
        f"{status.name} ({status.last_error})"
        for status in service.registry.statuses()
        if status.state.value == "failed"
    ]
    print(
        f"email-sender {__version__} ({service.role})"
        + (f" serving http://{settings.server.host}:{ports['api']}" if "api" in ports else "")
        + (f", metrics on :{ports['metrics']}" if "metrics" in ports else "")
        + f", data in {settings.data_dir}"
        + (f"; degraded, retrying: {', '.join(failing)}" if failing else ""),
        file=sys.stderr,
        flush=True,
    )


def _exit_after(grace: float) -> None:
    """Leave the process ``grace`` seconds from now even if something refuses to stop.

    The stop itself is bounded, but closing the event loop awaits leftover tasks and executor
    threads without a bound; this timer thread is what makes the bound hold for the process.
    """

    def force() -> None:
        print(
            f"error: shutdown took longer than server.shutdown_grace ({grace:g} s); exiting",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    timer = threading.Timer(grace, force)
    timer.daemon = True
    timer.start()


@app.command()
def health(
    url: Annotated[str, typer.Option(help="Base URL of the service.")] = "http://127.0.0.1:8080",
    detailed: Annotated[bool, typer.Option("--detailed", help="Probe every dependency.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 5.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the raw answers.")] = False,
) -> None:
    """Check a running service: one line per check, exit 0 only when healthy."""
    base = url.rstrip("/")
    checks: list[tuple[bool, str, str]] = []
    answers: dict[str, Any] = {}
    try:
        with httpx.Client(timeout=timeout) as client:
            summary = client.get(f"{base}/health")
            answers["health"] = body = summary.json()
            checks.append(
                (
                    body.get("status") == "ok",
                    "service",
                    f"{body.get('status')} (mode {body.get('mode')}, "
                    f"version {body.get('version')}, up {body.get('uptime_seconds', 0):.0f}s)",
                )
            )
            for name, manager in body.get("managers", {}).items():
                detail = manager["state"] + (
                    f": {manager['last_error']}" if manager.get("last_error") else ""
                )
                checks.append((manager["state"] == "running", name, detail))
            if detailed:
                answers["ready"] = ready = client.get(f"{base}/health/ready").json()
                for check in ready.get("checks", []):
                    detail = check.get("detail") or ""
                    if check.get("error"):
                        detail += f" ({check['error']})"
                    checks.append(
                        (
                            check["ok"],
                            f"ready/{check['name']}",
                            f"{detail} [{check['duration_ms']} ms]",
                        )
                    )
                checks.append((body.get("mode") == "normal", "mode", str(body.get("mode"))))
    except httpx.HTTPError as exc:
        checks.append((False, "service", f"cannot reach {base}: {exc}"))
    except ValueError:
        checks.append((False, "service", f"{base}/health did not answer JSON"))
    if json_output:
        typer.echo(json.dumps(answers, indent=2))
    for ok, name, detail in checks:
        typer.echo(f"{'✅' if ok else '❌'} {name}: {detail}")
    raise typer.Exit(0 if all(ok for ok, _, _ in checks) else 1)


@config_app.command("validate")
def config_validate(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file to check.")],
) -> None:
    """Check a config file: one line per problem with its key path; exit 1 when any."""
    try:
        load_settings(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"❌ {problem}")
        raise typer.Exit(1) from None
    typer.echo(f"✅ OK: {config} is valid")


@config_app.command("show")
def config_show(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Print the effective configuration (file + environment), secrets masked."""
    settings = _settings(config, data_dir)
    typer.echo(yaml.safe_dump(settings.masked(), sort_keys=False), nl=False)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Apply database migrations up to the newest."""
    from email_sender.db.engine import Database, upgrade

    settings = _settings(config, data_dir)

    async def run() -> str | None:
        database = Database(settings.database_url, migrate=False)
        try:
            return await upgrade(database.engine)
        finally:
            await database.stop()

    revision = asyncio.run(run())
    typer.echo(f"✅ database at revision {revision}")


@app.command()
def loadtest(
    url: Annotated[str, typer.Option(help="Base URL of the service.")] = "http://127.0.0.1:8080",
    scenario: Annotated[str, typer.Option(
        help="send: POST sample emails (the load test); search: semantic searches "
             "(the vector stress test).")] = "send",
    concurrency: Annotated[int | None, typer.Option(
        min=1, max=1000, help="Concurrent clients [default: 50 for send, 100 for search].")] = None,
    duration: Annotated[float, typer.Option(min=1, max=3600, help="Seconds to run.")] = 300,
    max_requests: Annotated[int, typer.Option(min=1, help="Stop after this many.")] = 10_000_000,
    path: Annotated[str | None, typer.Option(
        help="Route to load [default: /api/v1/emails for send, /api/v1/search for search].")
    ] = None,
    api_key: Annotated[str | None, typer.Option(
        envvar="EMAIL_SENDER_API_KEY",
        help="Bearer key with the send scope (read for search).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load a running service (the seeds' tests: send, 50 clients, 5 min, >= 1000 req/s,
    p95 < 100 ms; search, 100 clients, p95 < 50 ms).

    Every send creates a real email: point it at a node whose relay is the capture sink.
    """
    from email_sender.ops.loadtest import SCENARIOS, run_scenario

    if scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"{scenario!r} is not one of {', '.join(SCENARIOS)}", param_hint="--scenario"
        )
    chosen = SCENARIOS[scenario]
    with progress_bar(f"load {path or chosen.path}", total=None, quiet=json_output) as advance:
        result = asyncio.run(
            run_scenario(url.rstrip("/"), chosen, concurrency=concurrency, duration=duration,
                         max_requests=max_requests, path=path, api_key=api_key,
                         progress=advance)
        )
    if json_output:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        typer.echo(
            f"{result.scenario}: {result.requests} requests in {result.seconds:.1f}s: "
            f"{result.rps:.1f} req/s, p50 {result.p50_ms} ms, p95 {result.p95_ms} ms, "
            f"p99 {result.p99_ms} ms, errors {result.errors} {result.statuses}"
        )
        mark = "✅" if result.meets_seed_bar else "❌"
        typer.echo(f"{mark} bar: {result.bar}")
    raise typer.Exit(0 if result.errors == 0 else 1)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _cause_chain(exc: BaseException) -> list[str]:
    lines = []
    current: BaseException | None = exc
    while current is not None:
        lines.append(f"{type(current).__name__}: {current}")
        current = current.__cause__
    return lines


def run(entry: Callable[..., Any] = app) -> None:
    """Run the CLI; usage errors are the parser's (exit 2), ours get one line each."""
    try:
        entry()
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        sys.exit(1)
    except EmailSenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for cause in _cause_chain(exc)[1:]:
            print(f"  caused by {cause}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run()
