"""What a sequence is made of, as the API takes it, and the checks made before anything is kept.

A step's delay is a duration after the previous step (after enrolment for the first):
``"J+7"`` or ``"D+7"`` is seven days, and ``"3d"``, ``"12h"``, ``"90m"`` or a number of seconds
work too. Its templates are Jinja2 over the contact's fields (:data:`CONTACT_VARIABLES`); a
template that uses anything else is refused when the sequence is saved, naming the step, the
part and the name, not when the first email would go.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from email_sender.errors import ValidationError
from email_sender.mail.message import normalise_address
from email_sender.mail.templates import TemplateIn, TemplateRenderer
from email_sender.settings import parse_duration

MAX_STEPS = 20
MAX_DELAY = 365 * 86400.0
_DAY_OFFSET = re.compile(r"^\s*[JjDd]\s*\+\s*(\d{1,3})\s*$")

# The names a step's templates may use: the contact's fields, and the unsubscribe link.
CONTACT_VARIABLES = (
    "email", "name", "first_name", "organisation", "city", "region", "country", "timezone",
    "language", "tags", "attributes", "status", "unsubscribe_url",
)  # fmt: skip


def parse_delay(value: Any) -> float:
    if isinstance(value, str) and (match := _DAY_OFFSET.match(value)):
        seconds = int(match.group(1)) * 86400.0
    else:
        seconds = parse_duration(value)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise ValueError("must be a duration such as 'J+7', '3d', '12h' or seconds")
    if not 0 <= seconds <= MAX_DELAY:
        raise ValueError("must be between 0 and 365 days")
    return float(seconds)


class StepConditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Send the step only while the contact is in one of these statuses (else skip it).
    statuses: list[str] | None = Field(None, max_length=50)


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delay: float = Field(0.0, description="after the previous step: 'J+7', '3d', seconds")
    subject: str | None = Field(None, max_length=998)
    text: str | None = Field(None, max_length=200_000)
    html: str | None = Field(None, max_length=500_000)
    # A follow-up answers the first message (In-Reply-To, References, "Re: " subject).
    same_thread: bool = True
    conditions: StepConditions = Field(default_factory=StepConditions)

    @field_validator("delay", mode="before")
    @classmethod
    def _delay(cls, value: Any) -> float:
        return parse_delay(value)


class SequenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    sender: str = Field(min_length=3, max_length=320, description="the From: 'Name <addr>'")
    steps: list[StepIn] = Field(min_length=1, max_length=MAX_STEPS)


class SequencePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    sender: str | None = Field(None, min_length=3, max_length=320)


def check_sender(sender: str, field: str = "sender") -> str:
    """The sender as ``Name <addr>`` or ``addr``, its address checked and normalised."""
    return normalise_address(sender, field)


def check_steps(
    steps: list[StepIn], statuses: set[str], renderer: TemplateRenderer, *, first: int = 0
) -> None:
    """Refuse, by name, a step that could not be sent: no body, a subject on a follow-up in
    the same thread, a template that does not compile or uses an unknown name, an unknown
    status in its conditions. ``first`` is the position of ``steps[0]`` in the sequence.

    Only the names a template reads are checked here: a field a contact may lack (an attribute)
    fails that contact's enrolment when its step is rendered, not the whole sequence."""
    for offset, step in enumerate(steps):
        position = first + offset
        where = f"steps[{position}]"
        if step.text is None and step.html is None:
            raise ValidationError(f"{where}.text", "a step needs a text or an html body")
        threaded = position > 0 and step.same_thread
        if position == 0 and not step.subject:
            raise ValidationError(f"{where}.subject", "the first step needs a subject")
        if threaded and step.subject is not None:
            raise ValidationError(
                f"{where}.subject",
                "a follow-up in the same thread takes the first subject ('Re: ...'); "
                "set same_thread to false to give it its own",
            )
        if position > 0 and not step.same_thread and not step.subject:
            raise ValidationError(f"{where}.subject", "a step in a new thread needs a subject")
        for status in step.conditions.statuses or []:
            if status not in statuses:
                raise ValidationError(
                    f"{where}.conditions.statuses", f"{status!r} is not a lifecycle status"
                )
        template = TemplateIn(subject=step.subject, text=step.text, html=step.html)
        try:
            names = renderer.names(template)
        except ValidationError as exc:
            raise ValidationError(f"{where}.{exc.field.removeprefix('template.')}",
                                  exc.reason) from exc
        for part, wanted in names.items():
            unknown = sorted(wanted - set(CONTACT_VARIABLES))
            if unknown:
                raise ValidationError(
                    f"{where}.{part}",
                    f"uses {unknown[0]!r}, which is not a contact field "
                    f"(known: {', '.join(CONTACT_VARIABLES)})",
                )
