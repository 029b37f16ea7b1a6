"""One step of a sequence, for one contact, as the email the outbox takes.

A follow-up in the same thread answers the enrolment's first message: ``In-Reply-To`` and
``References`` carry its Message-ID and the subject is ``Re: `` and the first subject, so mail
clients show it under the first one. Every email carries ``List-Unsubscribe`` and
``List-Unsubscribe-Post`` (RFC 8058) when unsubscribe links are configured.

The idempotency key is the enrolment and the step: whoever sends it, and however many times the
scheduler is interrupted and tries again, the outbox keeps one email for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from email_sender.mail.message import EmailIn
from email_sender.mail.templates import TemplateIn

REPLY_PREFIX = "Re: "


def idempotency_key(enrolment_id: str, step: int) -> str:
    return f"outreach:{enrolment_id}:{step}"


def contact_variables(contact: dict[str, Any], unsubscribe_url: str) -> dict[str, Any]:
    """What a step's template may use (see ``steps.CONTACT_VARIABLES``); a missing field is an
    empty string, never the word "None"."""
    name = contact.get("name") or ""
    return {
        "email": contact["email"],
        "name": name,
        "first_name": name.split()[0] if name.strip() else "",
        **{
            field: contact.get(field) or ""
            for field in ("organisation", "city", "region", "country", "timezone", "language",
                          "status")
        },
        "tags": contact.get("tags") or [],
        "attributes": contact.get("attributes") or {},
        "unsubscribe_url": unsubscribe_url,
    }


def compose(
    *,
    sequence: dict[str, Any],
    step: dict[str, Any],
    enrolment: dict[str, Any],
    contact: dict[str, Any],
    unsubscribe: Callable[[str], dict[str, str]] | None,
) -> EmailIn:
    """The email of ``step`` for ``contact``; ``unsubscribe`` gives the headers for an address."""
    headers = unsubscribe(contact["email"]) if unsubscribe is not None else {}
    link = headers.get("List-Unsubscribe", "").strip("<>")
    variables = contact_variables(contact, link)
    subject = step["subject"]
    first = enrolment["thread_message_id"]
    if step["position"] > 0 and step["same_thread"] and first:
        headers = {**headers, "In-Reply-To": first, "References": first}
        thread_subject = enrolment["thread_subject"] or ""
        # Given as a variable, not as template text: a subject is never run as a template twice.
        variables["thread_subject"] = (
            thread_subject if thread_subject.lower().startswith("re:")
            else REPLY_PREFIX + thread_subject
        )
        subject = "{{ thread_subject }}"
    recipient = contact["email"]
    if contact.get("name"):
        quoted = contact["name"].replace("\\", "\\\\").replace('"', '\\"')
        recipient = f'"{quoted}" <{recipient}>'
    return EmailIn.model_validate({
        "from": sequence["sender"],
        "to": [recipient],
        "template": TemplateIn(subject=subject, text=step["text"], html=step["html"]),
        "variables": variables,
        "headers": headers,
        "tags": ["outreach"],
        "metadata": {
            "outreach": {
                "sequence_id": sequence["id"], "enrolment_id": enrolment["id"],
                "step": step["position"], "contact_id": contact["id"],
            }
        },
        "idempotency_key": idempotency_key(enrolment["id"], step["position"]),
        # A follow-up is meant to resemble what it follows: never held as a near-duplicate.
        "dedupe": False,
    })
