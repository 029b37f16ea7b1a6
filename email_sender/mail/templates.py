"""Inline Jinja2 templates for subject, text and html, rendered in a sandbox within bounds.

A request carries its template inline (``{"subject": ..., "text": ..., "html": ...}``) together
with ``variables``. Rendering never raises anything but :class:`ValidationError`: a missing
variable names ``variables.<name>``, a syntax error names ``template.<part>`` and its line, and a
sandbox violation or any other failure while rendering is refused the same way, so a bad template
is the caller's 422 and never the server's 500.

Rendering is bounded *while* it runs, never after: every loop iteration, call, filter, join and
output chunk spends from a :class:`RenderLimits` budget (operations, wall time, characters built
and characters output), and operations that build a large value in one step (``*``, ``**``,
``center``, ``replace``, ``join``, format widths, ...) are checked before they run. The checks are
cooperative because rendering runs in a worker thread (see :mod:`email_sender.mail.intake`), and
a thread cannot be stopped from outside.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import logging
import operator
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cachetools
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
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
# Every value built while rendering counts, kept or not, so that doubling a string in a loop
# stops long before it exhausts memory; this many times the output limit leaves room for
# templates that transform a large variable a few times.
BUILT_PER_OUTPUT_CHAR = 10
COMPILED_CACHE_SIZE = 256
YIELD_EVERY_OPERATIONS = 200
YIELD_SECONDS = 0.0002

_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined")
# Width and precision of printf-style (%) and str.format ({:...}) conversions.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")
# Arguments that set the size of what a filter or str method builds.
_WIDTH_FILTERS = frozenset({"center", "indent", "batch", "slice", "wordwrap"})
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


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
class RenderLimits:
    """What rendering one email's template may spend, all parts together."""

    seconds: float = 1.0
    operations: int = 1_000_000
    max_output_chars: int = 5 * 1024 * 1024


class _OverBudget(SecurityError):
    """Rendering went over a limit on work, time or size."""


class _Budget:
    """The remaining allowance of one render; shared by the parts of one email."""

    def __init__(self, limits: RenderLimits, deadline: float | None = None) -> None:
        self.limits = limits
        own_deadline = time.monotonic() + limits.seconds
        self.deadline = own_deadline if deadline is None else min(own_deadline, deadline)
        self.out_of_time = (
            f"took longer than {limits.seconds:g} s"
            if self.deadline == own_deadline
            else "the time for rendering this batch is spent"
        )
        self.operations_left = limits.operations
        self.built_left = limits.max_output_chars * BUILT_PER_OUTPUT_CHAR

    def spend(self, operations: int = 1) -> None:
        self.operations_left -= operations
        if self.operations_left % YIELD_EVERY_OPERATIONS == 0:
            # Hand the GIL over for a moment: a greedy render thread would otherwise make the
            # event loop wait its turn for the GIL again and again.
            time.sleep(YIELD_SECONDS)
        if self.operations_left < 0:
            raise _OverBudget(f"more than {self.limits.operations} operations")
        if time.monotonic() > self.deadline:
            raise _OverBudget(self.out_of_time)

    def allow_size(self, size: int, what: str) -> None:
        """Refuse, before it is built, a value of ``size`` items."""
        if size > self.limits.max_output_chars:
            raise _OverBudget(f"{what} builds more than {self.limits.max_output_chars} characters")

    def built(self, value: Any) -> Any:
        """Count a value that was just built; refuse it when it or the total is too large."""
        if isinstance(value, str | bytes | list | tuple | dict | set):
            self.allow_size(len(value), type(value).__name__)
            self.built_left -= len(value)
            if self.built_left < 0:
                raise _OverBudget(
                    f"builds more than {self.limits.max_output_chars * BUILT_PER_OUTPUT_CHAR}"
                    " characters in all"
                )
        return value


# The budget of the render running in this thread; set only around a render.
_current_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "template_budget", default=None
)


def _budget() -> _Budget:
    budget = _current_budget.get()
    if budget is None:  # only a render sets it: a template run any other way is a bug
        raise _OverBudget("rendered outside a budget")
    return budget


class _MeteredCodeGenerator(CodeGenerator):
    """Compiles loops, ``~`` joins and filters so that each one spends from the budget."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # for x in environment.metered_iter(<iterable>): the call itself goes through the
        # sandbox like any other (Jinja2 allows no custom node types).
        if not _is_metered(node.iter):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("metered_iter"), [node.iter], [], None, None,
                lineno=node.iter.lineno,
            )
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.metered_value(")
        super().visit_Concat(node, frame)
        self.write(")")

    def visit_Filter(self, node: nodes.Filter, frame: Frame) -> None:
        self.write("environment.metered_value(")
        super().visit_Filter(node, frame)
        self.write(")")


def _is_metered(iterable: nodes.Node) -> bool:
    return (
        isinstance(iterable, nodes.Call)
        and isinstance(iterable.node, nodes.EnvironmentAttribute)
        and iterable.node.name == "metered_iter"
    )


class _LimitedSandbox(SandboxedEnvironment):
    """The Jinja2 sandbox, metered: see the module docstring."""

    code_generator_class = _MeteredCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # lipsum(n) builds n paragraphs in one call; an email has no use for it.
        self.globals.pop("lipsum", None)
        self.filters = {name: _metered_filter(name, func) for name, func in self.filters.items()}

    # Called from compiled templates (see _MeteredCodeGenerator).

    def metered_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        budget = _budget()
        for item in iterable:
            budget.spend()
            yield item

    def metered_value(self, value: Any) -> Any:
        budget = _budget()
        budget.spend()
        return budget.built(value)

    def concat(self, parts: Iterable[str]) -> str:
        # Joins the output buffered by {% set %} blocks, macros and filter blocks.
        chunks = list(parts)
        budget = _budget()
        budget.allow_size(sum(len(chunk) for chunk in chunks), "a block")
        return budget.built("".join(chunks))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.spend()
        name = getattr(__obj, "__name__", "")
        method_of = getattr(__obj, "__self__", None)
        if isinstance(method_of, str) and name in _WIDTH_METHODS:
            _check_widths(budget, name, args, kwargs)
        # The sandbox hands out str.format wrapped; the string is the wrapped method's self.
        format_of = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        if name in ("format", "format_map") and isinstance(format_of, str):
            _check_format_spec(budget, format_of, (*args, *kwargs.values()))
        result = budget.built(super().call(__context, __obj, *args, **kwargs))
        if isinstance(method_of, list | dict | set):  # list.append and friends grow in place
            budget.allow_size(len(method_of), name)
        return result

    def call_binop(self, context: Context, operand: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.spend()
        if operand == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent over {MAX_EXPONENT}")
            return operator.pow(left, right)
        if operand == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
            return budget.built(operator.mul(left, right))
        if operand == "%" and isinstance(left, str):
            values = right if isinstance(right, tuple) else (right,)
            _check_printf(budget, left, values)
            return budget.built(operator.mod(left, right))
        if operand == "+":
            return budget.built(operator.add(left, right))
        return super().call_binop(context, operand, left, right)


def _check_repeat(sequence: Any, times: Any) -> None:
    if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
        if len(sequence) * times > MAX_REPEAT:
            raise SecurityError(f"repetition builds more than {MAX_REPEAT} items")


def _check_widths(
    budget: _Budget, what: str, args: Iterable[Any], kwargs: Mapping[str, Any]
) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool):
            budget.allow_size(value, what)


def _check_printf(budget: _Budget, template: str, values: Iterable[Any]) -> None:
    for match in _PERCENT_SPEC.finditer(template):
        if "*" in match.groups():
            _check_widths(budget, "a * width", values, {})
        for number in match.groups():
            if number and number != "*":
                budget.allow_size(int(number), "a % format width")


def _check_format_spec(budget: _Budget, template: str, values: Iterable[Any]) -> None:
    for spec in _BRACE_SPEC.findall(template):
        for number in re.findall(r"\d+", spec):
            budget.allow_size(int(number), "a format width")
    if _NESTED_SPEC.search(template):  # "{:{w}}": the width is one of the values
        _check_widths(budget, "a nested format width", values, {})


def _metered_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters that take the context or environment get it before the value.
    value_index = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def metered(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.spend()
        value, arguments = args[value_index], args[value_index + 1 :]
        if name in _WIDTH_FILTERS:
            _check_widths(budget, f"filter {name}", arguments, kwargs)
        elif name == "format" and isinstance(value, str):
            _check_printf(budget, value, arguments)
        elif name == "join" and isinstance(value, list | tuple):
            separator = arguments[0] if arguments else kwargs.get("d", "")
            size = sum(len(item) if isinstance(item, str) else 1 for item in value)
            budget.allow_size(size + len(str(separator)) * len(value), "filter join")
        elif name == "replace" and len(arguments) >= 2:
            old, new = str(arguments[0]), str(arguments[1])
            text = str(value)
            times = text.count(old) if old else len(text) + 1
            budget.allow_size(len(text) + max(0, len(new) - len(old)) * times, "filter replace")
        return func(*args, **kwargs)

    return metered


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
        self._plain = _LimitedSandbox(undefined=StrictUndefined, autoescape=False)
        self._html = _LimitedSandbox(undefined=StrictUndefined, autoescape=True)
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
        budget = _Budget(self.limits, self._deadline)
        rendered: dict[Part, str] = {}
        for part, source in template.parts().items():
            rendered[part] = self._render_part(part, source, variables, budget)
        return RenderedTemplate(
            subject=rendered.get("subject"), text=rendered.get("text"), html=rendered.get("html")
        )

    def _render_part(
        self, part: Part, source: str, variables: Mapping[str, Any], budget: _Budget
    ) -> str:
        field = f"template.{part}"
        compiled = self._compile(part, source)
        # Checked before rendering so the error names the first missing top-level variable
        # even when the template would only reach it in a branch.
        missing = sorted(name for name in compiled.wanted if name not in variables)
        if missing:
            raise ValidationError(f"variables.{missing[0]}", "missing template variable")
        token = _current_budget.set(budget)
        try:
            return self._stream(compiled.template.generate(**variables), field)
        except UndefinedError as exc:
            raise _undefined(exc, variables) from exc
        except _OverBudget as exc:
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
            _current_budget.reset(token)

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
        with self._cache_lock:
            self._cache[key] = compiled
        return compiled

    def _stream(self, chunks: Iterator[str], field: str) -> str:
        # Counted chunk by chunk, so that a loop printing forever stops at the limit.
        budget = _budget()
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
