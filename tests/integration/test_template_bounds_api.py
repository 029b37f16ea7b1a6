"""A template that would freeze the node gets a 422 in time, and the node keeps serving."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from email_sender.mail.intake import BATCH_RENDER_SECONDS

NESTED_LOOPS = (
    "{% for a in range(50000) %}{% for b in range(50000) %}x{% endfor %}{% endfor %}"
)
# Work without loops, so that only the deadline stops it (about 0.5 s).
MACRO_FAN_OUT = (
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
)


def email(**fields: Any) -> dict[str, Any]:
    return {"from": "shop@example.com", "to": ["ann@example.org"], **fields}


async def health_while(http: httpx.AsyncClient, work: asyncio.Task[Any]) -> list[float]:
    """Answer times of GET /health, one after the other, for as long as ``work`` runs."""
    times: list[float] = []
    while not work.done():
        started = time.monotonic()
        answer = await http.get("/health")
        times.append(time.monotonic() - started)
        assert answer.status_code == 200
        await asyncio.sleep(0.02)
    return times


async def test_freezing_template_is_refused_in_time_while_health_answers(
    client: httpx.AsyncClient,
) -> None:
    for source in (NESTED_LOOPS, MACRO_FAN_OUT):
        started = time.monotonic()
        post = asyncio.create_task(
            client.post("/api/v1/emails", json=email(template={"subject": "Hi", "text": source}))
        )
        health = await health_while(client, post)
        answer = await post
        took = time.monotonic() - started

        assert answer.status_code == 422, answer.text
        details = answer.json()["error"]["details"]
        assert details["field"] == "template.text"
        assert "over the rendering limit" in details["reason"]
        assert took < 2.0
        assert len(health) >= 2  # /health answered again and again meanwhile
        assert max(health) < 1.0


async def test_a_batch_renders_within_one_bounded_time_and_keeps_the_good_emails(
    client: httpx.AsyncClient,
) -> None:
    bad = email(template={"text": MACRO_FAN_OUT})
    good = email(template={"subject": "Order {{ n }}", "text": "Thanks, {{ name }}."},
                 variables={"n": 7, "name": "Ann"})
    # Twelve bad templates at about 0.5 s each would take 6 s; the batch stops at its deadline.
    items = [good, *([bad] * 12), good]
    started = time.monotonic()
    post = asyncio.create_task(client.post("/api/v1/emails/batch", json={"emails": items}))
    health = await health_while(client, post)
    answer = await post
    took = time.monotonic() - started

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (1, 13)
    first, *bad_items, last = body["items"]
    for item in bad_items:
        assert item["error"]["details"]["field"] == "template.text"
    # Past the batch's deadline even a cheap template is refused: the total work is bounded.
    assert last["error"]["details"]["field"] == "template.subject"
    assert "the time for rendering this batch is spent" in last["error"]["details"]["reason"]
    assert took < BATCH_RENDER_SECONDS + 3
    assert max(health) < 1.0
    stored = (await client.get(f"/api/v1/emails/{first['id']}")).json()
    assert (stored["subject"], stored["text"]) == ("Order 7", "Thanks, Ann.")
