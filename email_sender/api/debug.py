"""Admin-only diagnostics on the metrics port: stack dump, sampling profile, heap top.

Enabled by ``metrics.debug_endpoints``; when API keys are configured each call needs an ``admin``
key, as the seeds' pprof endpoints did.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time
import traceback
import tracemalloc

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from email_sender.api.errors import error_response
from email_sender.api.security import KeyRing
from email_sender.service import Service


def routes(service: Service) -> list[Route]:
    keys = KeyRing(service.settings.security)

    def authorised(request: Request) -> Response | None:
        if not keys.enabled:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        principal = keys.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            return error_response(401, "unauthorized", "an admin API key is required")
        if not principal.allows("admin"):
            return error_response(403, "forbidden", "this API key lacks the 'admin' scope")
        return None

    async def stacks(request: Request) -> Response:
        if (refusal := authorised(request)) is not None:
            return refusal
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        parts = []
        for ident, frame in sys._current_frames().items():
            parts.append(f"--- thread {names.get(ident, ident)}\n")
            parts.extend(traceback.format_stack(frame))
        for task in asyncio.all_tasks():
            parts.append(f"--- task {task.get_name()}\n")
            parts.extend(
                traceback.format_stack(task.get_stack(limit=20)[-1])
                if task.get_stack(limit=1)
                else ["(no frame)\n"]
            )
        return PlainTextResponse("".join(parts))

    async def profile(request: Request) -> Response:
        if (refusal := authorised(request)) is not None:
            return refusal
        try:
            seconds = min(30.0, max(0.1, float(request.query_params.get("seconds", "2"))))
        except ValueError:
            return error_response(422, "validation_error", "seconds: must be a number")
        samples = await asyncio.to_thread(_sample, seconds)
        top = [{"where": where, "samples": count} for where, count in samples.most_common(40)]
        return JSONResponse({"seconds": seconds, "top": top})

    async def heap(request: Request) -> Response:
        if (refusal := authorised(request)) is not None:
            return refusal
        if not tracemalloc.is_tracing():
            tracemalloc.start(10)
            return JSONResponse({"tracing": "started; call again to see allocations"})
        snapshot = tracemalloc.take_snapshot()
        top = [
            {"where": str(stat.traceback[0]), "size_bytes": stat.size, "count": stat.count}
            for stat in snapshot.statistics("lineno")[:40]
        ]
        return JSONResponse({"top": top})

    return [
        Route("/debug/stacks", stacks),
        Route("/debug/profile", profile),
        Route("/debug/heap", heap),
    ]


def _sample(seconds: float, interval: float = 0.005) -> collections.Counter[str]:
    """Sample every other thread's innermost frame (file:line function) for ``seconds``."""
    me = threading.get_ident()
    counts: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for ident, frame in sys._current_frames().items():
            if ident != me:
                code = frame.f_code
                counts[f"{code.co_filename}:{frame.f_lineno} {code.co_name}"] += 1
        time.sleep(interval)
    return counts
