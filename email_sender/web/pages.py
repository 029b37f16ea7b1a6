"""The console's views: each reads through the API's own route functions, so a page shows what
the API answers, with the same checks, and nothing is queried twice over."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import pydantic
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from email_sender.api.errors import describe_validation
from email_sender.api.middleware import blocked_by
from email_sender.api.routes import (
    backups,
    contacts,
    conversations,
    emails,
    inbound,
    search,
    sequences,
    sink,
    suppressions,
)
from email_sender.classify import INTENTS
from email_sender.mail.outbox import Status
from email_sender.service import Service
from email_sender.web import overview
from email_sender.web.auth import ConsoleRefused, SessionDep
from email_sender.web.render import page

router = APIRouter(include_in_schema=False)

Notice = Annotated[str | None, Query(max_length=300)]
Cursor = Annotated[str | None, Query(max_length=512)]
Filter = Annotated[str | None, Query(max_length=320)]
# How many contacts each column of the lifecycle board shows.
BOARD_COLUMN = 25


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def guard(request: Request, method: str, api_path: str) -> Service:
    """Refuse what the service's mode refuses to the API route the console stands in for."""
    service = service_of(request)
    mode = await service.modes.current()
    if blocked_by(mode, method, api_path):
        raise ConsoleRefused(
            503, f"the service is in {mode.value} mode: this is unavailable until it leaves it"
        )
    return service


def bad_input(exc: pydantic.ValidationError) -> ConsoleRefused:
    message, _ = describe_validation(exc)  # type: ignore[arg-type]
    return ConsoleRefused(422, message)


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, session: SessionDep, notice: Notice = None) -> Any:
    """Mode, managers, queue, activity: refreshed live."""
    figures = await overview.read(service_of(request))
    return page(request, "overview.html", partial="_overview.html", active="overview",
                figures=figures, notice=notice)


@router.get("/ui/emails", response_class=HTMLResponse)
async def emails_page(
    request: Request,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{0,16}$")] = None,
    to: Filter = None,
    from_: Annotated[str | None, Query(alias="from", max_length=320)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Cursor = None,
) -> Any:
    """The outbox, newest first, with filters."""
    service = await guard(request, "GET", "/api/v1/emails")
    listed = await emails.list_emails(
        service, session.principal, status=status or None, to=to or None,
        from_=from_ or None, tag=tag or None, since=None, until=None, limit=50, cursor=cursor,
    )
    filters = {"status": status or "", "to": to or "", "from": from_ or "", "tag": tag or ""}
    return page(request, "emails.html", partial="_emails.html", active="emails", listed=listed,
                filters=filters, statuses=[status.value for status in Status])


@router.get("/ui/emails/{email_id}", response_class=HTMLResponse)
async def email_page(email_id: str, request: Request, session: SessionDep) -> Any:
    """One email: its headers as sent, every attempt, and the conversation."""
    service = await guard(request, "GET", "/api/v1/emails")
    email = await emails.get_email(email_id, service, session.principal)
    thread = None
    if service.inbound is not None:
        thread = await conversations.conversation(email_id, service, session.principal)
    return page(request, "email.html", partial="_email.html", active="emails", email=email,
                thread=thread)


@router.get("/ui/search", response_class=HTMLResponse)
async def search_page(
    request: Request,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=4000)] = None,
    direction: Annotated[Literal["", "outbound", "inbound"], Query()] = "",
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{0,16}$")] = None,
    mode: Annotated[Literal["hybrid", "dense", "sparse"], Query()] = "hybrid",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Any:
    """Search sent and received mail by meaning and words."""
    service = await guard(request, "POST", "/api/v1/search")
    form = {"q": q or "", "direction": direction, "status": status or "", "mode": mode,
            "limit": limit}
    results = None
    if service.search is None:
        raise ConsoleRefused(404, "this node does not search: its role runs no vector managers")
    if q:
        conditions = {"direction": direction or None, "status": status or None}
        try:
            body = search.SearchIn(
                query=q, limit=limit, mode=mode,
                filter=search.EmailFilter(**{k: v for k, v in conditions.items() if v}),
            )
        except pydantic.ValidationError as exc:
            raise bad_input(exc) from exc
        results = (await search.search(body, request, session.principal))["results"]
    return page(request, "search.html", active="search", form=form, results=results)


@router.get("/ui/inbox", response_class=HTMLResponse)
async def inbox_page(
    request: Request,
    session: SessionDep,
    kind: Annotated[inbound.Kind | Literal[""], Query()] = "",
    review: Annotated[bool, Query()] = False,
    cursor: Cursor = None,
    notice: Notice = None,
) -> Any:
    """Received mail with its classification; a reply's label corrected in one click."""
    service = await guard(request, "GET", "/api/v1/inbound")
    listed = await inbound.list_inbound(
        service, session.principal, kind=kind or None, intent=None,
        needs_review=True if review else None, email_id=None, from_=None, since=None,
        limit=50, cursor=cursor,
    )
    return page(request, "inbox.html", active="inbox", listed=listed, intents=INTENTS,
                filters={"kind": kind, "review": review}, notice=notice,
                kinds=get_args(inbound.Kind))


@router.get("/ui/contacts", response_class=HTMLResponse)
async def contacts_page(
    request: Request, session: SessionDep, q: Annotated[str | None, Query(max_length=200)] = None
) -> Any:
    """The lifecycle board: each status with its contacts."""
    service = await guard(request, "GET", "/api/v1/contacts")
    described = await contacts.lifecycle(service, session.principal)
    columns = []
    for status in described["statuses"]:
        listed = await contacts.list_contacts(
            service, session.principal, status=status["name"], tag=None, q=q or None,
            limit=BOARD_COLUMN, cursor=None,
        )
        columns.append({**status, "contacts": listed["items"], "more": listed["next_cursor"]})
    return page(request, "contacts.html", active="contacts", columns=columns, q=q or "")


@router.get("/ui/sequences", response_class=HTMLResponse)
async def sequences_page(request: Request, session: SessionDep, notice: Notice = None) -> Any:
    """Outreach sequences with their figures."""
    service = await guard(request, "GET", "/api/v1/sequences")
    listed = await sequences.list_sequences(service, session.principal)
    rows = []
    for sequence in listed["items"]:
        stats = await sequences.stats(sequence["id"], service, session.principal)
        rows.append({**sequence, "stats": stats})
    return page(request, "sequences.html", active="sequences", sequences=rows, notice=notice)


@router.get("/ui/sequences/{sequence_id}", response_class=HTMLResponse)
async def sequence_page(sequence_id: str, request: Request, session: SessionDep) -> Any:
    """One sequence: its steps, figures per step and the next sends it plans."""
    service = await guard(request, "GET", "/api/v1/sequences")
    sequence = await sequences.get_sequence(sequence_id, service, session.principal)
    stats = await sequences.stats(sequence_id, service, session.principal)
    planned = await sequences.preview(sequence_id, service, session.principal, count=20)
    return page(request, "sequence.html", active="sequences", sequence=sequence, stats=stats,
                planned=planned["items"])


@router.get("/ui/suppressions", response_class=HTMLResponse)
async def suppressions_page(
    request: Request, session: SessionDep, cursor: Cursor = None, notice: Notice = None
) -> Any:
    """Addresses that are never written to, and why."""
    service = await guard(request, "GET", "/api/v1/suppressions")
    listed = await suppressions.list_suppressions(service, session.principal, limit=100,
                                                  cursor=cursor)
    return page(request, "suppressions.html", active="suppressions", listed=listed,
                notice=notice)


@router.get("/ui/backups", response_class=HTMLResponse)
async def backups_page(request: Request, session: SessionDep, notice: Notice = None) -> Any:
    """Backups in backup.dir: create one, verify one."""
    service = await guard(request, "GET", "/api/v1/backups")
    listed = None
    if session.principal.allows("admin"):
        listed = await backups.list_backups(service, session.principal)
    return page(request, "backups.html", active="backups", listed=listed, notice=notice,
                report=None)


@router.get("/ui/sink", response_class=HTMLResponse)
async def sink_page(
    request: Request, session: SessionDep, offset: Annotated[int, Query(ge=0)] = 0
) -> Any:
    """What the embedded capture sink received."""
    service = await guard(request, "GET", "/api/v1/sink/messages")
    listed = await sink.messages(service, session.principal, limit=50, offset=offset)
    return page(request, "sink.html", partial="_sink.html", active="sink", listed=listed,
                offset=offset)

