"""Inline Jinja2 templates for subject, text and html, rendered in a sandbox.

A request carries its template inline (``{"subject": ..., "text": ..., "html": ...}``) together
with ``variables``. Rendering never raises anything but :class:`ValidationError`: a missing
variable names ``variables.<name>``, a syntax error names ``template.<part>`` and its line, and a
sandbox violation or any other failure while rendering is refused the same way, so a bad template
is the caller's 422 and never the server's 500.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, model_validator

from email_sender.errors import ValidationError

logger = logging.getLogger(__name__)

Part = Literal["subject", "text", "html"]
PARTS: tuple[Part, ...] = ("subject", "text", "html")

# Caps on what one operator may build: the sandbox already caps range(), but "x" * 10**9 or
# 10 ** 10**9 would still exhaust memory or CPU inside a single request.
MAX_REPEAT = 100_000
MAX_EXPONENT = 256

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


class _LimitedSandbox(SandboxedEnvironment):
    """The Jinja2 sandbox, plus limits on repetition and exponentiation."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operand: str, left: Any, right: Any) -> Any:
        if operand == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent over {MAX_EXPONENT}")
            return operator.pow(left, right)
        if operand == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
            return operator.mul(left, right)
        return super().call_binop(context, operand, left, right)


def _check_repeat(sequence: Any, times: Any) -> None:
    if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
        if len(sequence) * times > MAX_REPEAT:
            raise SecurityError(f"repetition builds more than {MAX_REPEAT} items")


class TemplateRenderer:
    """Renders inline templates with ``StrictUndefined``; html is autoescaped, the rest is not."""

    def __init__(self, *, max_output_chars: int = 5 * 1024 * 1024) -> None:
        self.max_output_chars = max_output_chars
        self._plain = _LimitedSandbox(undefined=StrictUndefined, autoescape=False)
        self._html = _LimitedSandbox(undefined=StrictUndefined, autoescape=True)

    def render(self, template: TemplateIn, variables: Mapping[str, Any]) -> RenderedTemplate:
        """Render every part of ``template`` with ``variables``; raise ValidationError if not."""
        rendered: dict[Part, str] = {}
        for part, source in template.parts().items():
            rendered[part] = self._render_part(part, source, variables)
        return RenderedTemplate(
            subject=rendered.get("subject"), text=rendered.get("text"), html=rendered.get("html")
        )

    def _render_part(self, part: Part, source: str, variables: Mapping[str, Any]) -> str:
        env = self._html if part == "html" else self._plain
        field = f"template.{part}"
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as exc:
            reason = f"syntax error at line {exc.lineno}: {exc.message}"
            raise ValidationError(field, reason) from exc
        _require_variables(tree, variables, env)
        try:
            output = env.from_string(tree).render(**variables)
        except UndefinedError as exc:
            raise _undefined(exc, variables) from exc
        except SecurityError as exc:
            raise ValidationError(field, f"unsafe template operation: {exc}") from exc
        except Exception as exc:  # any error inside a user's template is the user's error
            logger.info("template_render_failed", extra={"part": part, "error": repr(exc)})
            raise ValidationError(field, f"render failed: {type(exc).__name__}: {exc}") from exc
        if len(output) > self.max_output_chars:
            raise ValidationError(field, f"renders to more than {self.max_output_chars} characters")
        return output


def _require_variables(
    tree: nodes.Template, variables: Mapping[str, Any], env: SandboxedEnvironment
) -> None:
    # Checked before rendering so the error names the first missing top-level variable even
    # when the template would only reach it in a branch.
    wanted = meta.find_undeclared_variables(tree) - set(env.globals)
    missing = sorted(name for name in wanted if name not in variables)
    if missing:
        raise ValidationError(f"variables.{missing[0]}", "missing template variable")


def _undefined(exc: UndefinedError, variables: Mapping[str, Any]) -> ValidationError:
    match = _UNDEFINED_NAME.search(exc.message or "")
    if match and match.group(1) not in variables:
        return ValidationError(f"variables.{match.group(1)}", "missing template variable")
    return ValidationError("variables", f"undefined value in template: {exc.message}")
