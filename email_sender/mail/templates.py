"""Inline Jinja2 templates for subject, text and html, rendered in a sandbox within bounds.

A request carries its template inline (``{"subject": ..., "text": ..., "html": ...}``) together
with ``variables``. Rendering never raises anything but :class:`ValidationError`: a missing
variable names ``variables.<name>``, a syntax error names ``template.<part>`` and its line, and a
sandbox violation or any other failure while rendering is refused the same way, so a bad template
is the caller's 422 and never the server's 500.

Rendering is bounded *while* it runs, never after: see :mod:`email_sender.mail.sandbox` for the
budget every step spends from; the output is counted here, chunk by chunk.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cachetools
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from pydantic import BaseModel, ConfigDict, model_validator

from email_sender.errors import ValidationError
from email_sender.mail.sandbox import (
    Budget,
    LimitedSandbox,
    OverBudget,
    RenderLimits,
    active_budget,
    current_budget,
)

logger = logging.getLogger(__name__)

Part = Literal["subject", "text", "html"]
PARTS: tuple[Part, ...] = ("subject", "text", "html")

COMPILED_CACHE_SIZE = 256
# Only sources up to this size are cached, so the cache stays small whatever is sent.
COMPILED_CACHE_MAX_SOURCE = 64 * 1024

_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined")


class TemplateIn(BaseModel):
    """An inline template: each part is a Jinja2 source string."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = None
    text: str | None = None
    html: str | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> TemplateIn:
        if self.subject is None and self.text is None and self.html is None:
            raise ValueError("give at least one of subject, text or html")
        return self

    def parts(self) -> dict[Part, str]:
        """The parts that are set, by name."""
        return {part: source for part in PARTS if (source := getattr(self, part)) is not None}


@dataclass(frozen=True)
class RenderedTemplate:
    subject: str | None
    text: str | None
    html: str | None


@dataclass(frozen=True)
class _Compiled:
    wanted: frozenset[str]  # top-level variables the template reads
    template: Template


class TemplateRenderer:
    """Renders inline templates with ``StrictUndefined``; html is autoescaped, the rest is not."""

    def __init__(
        self, *, max_output_chars: int | None = None, limits: RenderLimits | None = None
    ) -> None:
        limits = limits or RenderLimits()
        if max_output_chars is not None:
            limits = RenderLimits(limits.seconds, limits.operations, max_output_chars)
        self.limits = limits
        self.max_output_chars = limits.max_output_chars
        self._plain = LimitedSandbox(undefined=StrictUndefined, autoescape=False)
        self._html = LimitedSandbox(undefined=StrictUndefined, autoescape=True)
        # A batch shares one deadline across its emails: see within().
        self._deadline: float | None = None
        # Compiling costs more than rendering; a campaign sends one template many times.
        self._cache: cachetools.LRUCache[tuple[bool, str], _Compiled] = cachetools.LRUCache(
            COMPILED_CACHE_SIZE
        )
        self._cache_lock = threading.Lock()

    def within(self, deadline: float) -> TemplateRenderer:
        """This renderer, but every render also ends by ``deadline`` (time.monotonic())."""
        bounded = copy.copy(self)  # shares the compiled-in sandboxes
        bounded._deadline = deadline
        return bounded

    def render(self, template: TemplateIn, variables: Mapping[str, Any]) -> RenderedTemplate:
        """Render every part of ``template`` with ``variables``; raise ValidationError if not."""
        budget = Budget(self.limits, self._deadline)
        rendered: dict[Part, str] = {}
        for part, source in template.parts().items():
            rendered[part] = self._render_part(part, source, variables, budget)
        return RenderedTemplate(
            subject=rendered.get("subject"), text=rendered.get("text"), html=rendered.get("html")
        )

    def names(self, template: TemplateIn) -> dict[Part, frozenset[str]]:
        """The top-level variables each part reads; ValidationError if a part does not compile."""
        return {
            part: self._compile(part, source).wanted
            for part, source in template.parts().items()
        }

    def _render_part(
        self, part: Part, source: str, variables: Mapping[str, Any], budget: Budget
    ) -> str:
        field = f"template.{part}"
        compiled = self._compile(part, source)
        # Checked before rendering so the error names the first missing top-level variable
        # even when the template would only reach it in a branch.
        missing = sorted(name for name in compiled.wanted if name not in variables)
        if missing:
            raise ValidationError(f"variables.{missing[0]}", "missing template variable")
        token = current_budget.set(budget)
        try:
            return self._stream(compiled.template.generate(**variables), field)
        except UndefinedError as exc:
            raise _undefined(exc, variables) from exc
        except OverBudget as exc:
            logger.info("template_over_limit", extra={"part": part, "reason": str(exc)})
            raise ValidationError(field, f"over the rendering limit: {exc}") from exc
        except SecurityError as exc:
            raise ValidationError(field, f"unsafe template operation: {exc}") from exc
        except ValidationError:
            raise
        except Exception as exc:  # any error inside a user's template is the user's error
            logger.info("template_render_failed", extra={"part": part, "error": repr(exc)})
            raise ValidationError(field, f"render failed: {type(exc).__name__}: {exc}") from exc
        finally:
            current_budget.reset(token)

    def _compile(self, part: Part, source: str) -> _Compiled:
        key = (part == "html", source)
        with self._cache_lock:
            compiled = self._cache.get(key)
        if compiled is not None:
            return compiled
        env = self._html if part == "html" else self._plain
        field = f"template.{part}"
        try:
            tree = env.parse(source)
            wanted = frozenset(meta.find_undeclared_variables(tree) - set(env.globals))
            compiled = _Compiled(wanted, env.from_string(tree))
        except TemplateSyntaxError as exc:
            reason = f"syntax error at line {exc.lineno}: {exc.message}"
            raise ValidationError(field, reason) from exc
        except Exception as exc:  # e.g. RecursionError on absurdly nested expressions
            raise ValidationError(field, f"cannot compile: {type(exc).__name__}") from exc
        if len(source) <= COMPILED_CACHE_MAX_SOURCE:
            with self._cache_lock:
                self._cache[key] = compiled
        return compiled

    def _stream(self, chunks: Iterator[str], field: str) -> str:
        # Counted chunk by chunk, so that a loop printing forever stops at the limit.
        budget = active_budget()
        output: list[str] = []
        size = 0
        for chunk in chunks:
            budget.spend()
            size += len(chunk)
            if size > self.max_output_chars:
                raise ValidationError(
                    field, f"renders to more than {self.max_output_chars} characters"
                )
            output.append(chunk)
        return "".join(output)


def _undefined(exc: UndefinedError, variables: Mapping[str, Any]) -> ValidationError:
    match = _UNDEFINED_NAME.search(exc.message or "")
    if match and match.group(1) not in variables:
        return ValidationError(f"variables.{match.group(1)}", "missing template variable")
    return ValidationError("variables", f"undefined value in template: {exc.message}")
