"""The metered Jinja2 sandbox: every step of a render spends from a budget.

Every loop iteration, call, filter, join and output chunk spends from a :class:`Budget` set up
from :class:`RenderLimits` (operations, wall time, characters built), and operations that build a
large value in one step (``*``, ``**``, ``center``, ``replace``, ``join``, format widths, ...) are
checked before they run. The checks are cooperative, because a render runs in a worker thread
(see :mod:`email_sender.mail.intake`) and a thread cannot be stopped from outside; the thread also
hands the GIL over every few hundred operations so that the event loop is not kept waiting.
:mod:`email_sender.mail.templates` is the only user.
"""

from __future__ import annotations

import contextvars
import functools
import operator
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

# Caps on what one operator may build: the sandbox already caps range(), but "x" * 10**9 or
# 10 ** 10**9 would still exhaust memory or CPU inside a single request.
MAX_REPEAT = 100_000
MAX_EXPONENT = 256
# Every value built while rendering counts, kept or not, so that doubling a string in a loop
# stops long before it exhausts memory; this many times the output limit leaves room for
# templates that transform a large variable a few times.
BUILT_PER_OUTPUT_CHAR = 10
YIELD_EVERY_OPERATIONS = 200
YIELD_SECONDS = 0.0002

# Width and precision of printf-style (%) and str.format ({:...}) conversions.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")
# Arguments that set the size of what a filter or str method builds.
_WIDTH_FILTERS = frozenset({"center", "indent", "batch", "slice", "wordwrap"})
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


@dataclass(frozen=True)
class RenderLimits:
    """What rendering one email's template may spend, all parts together."""

    # An email's template renders in milliseconds; the rest of a 2 s answer is margin for a
    # loaded machine.
    seconds: float = 0.5
    operations: int = 1_000_000
    max_output_chars: int = 5 * 1024 * 1024


class OverBudget(SecurityError):
    """Rendering went over a limit on work, time or size."""


class Budget:
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
            raise OverBudget(f"more than {self.limits.operations} operations")
        if time.monotonic() > self.deadline:
            raise OverBudget(self.out_of_time)

    def allow_size(self, size: int, what: str) -> None:
        """Refuse, before it is built, a value of ``size`` items."""
        if size > self.limits.max_output_chars:
            raise OverBudget(f"{what} builds more than {self.limits.max_output_chars} characters")

    def built(self, value: Any) -> Any:
        """Count a value that was just built; refuse it when it or the total is too large."""
        if isinstance(value, str | bytes | list | tuple | dict | set):
            self.allow_size(len(value), type(value).__name__)
            self.built_left -= len(value)
            if self.built_left < 0:
                raise OverBudget(
                    f"builds more than {self.limits.max_output_chars * BUILT_PER_OUTPUT_CHAR}"
                    " characters in all"
                )
        return value


# The budget of the render running in this thread; set only around a render.
current_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "template_budget", default=None
)


def active_budget() -> Budget:
    budget = current_budget.get()
    if budget is None:  # only a render sets it: a template run any other way is a bug
        raise OverBudget("rendered outside a budget")
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


class LimitedSandbox(SandboxedEnvironment):
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
        budget = active_budget()
        for item in iterable:
            budget.spend()
            yield item

    def metered_value(self, value: Any) -> Any:
        budget = active_budget()
        budget.spend()
        return budget.built(value)

    def concat(self, parts: Iterable[str]) -> str:
        # Joins the output buffered by {% set %} blocks, macros and filter blocks.
        chunks = list(parts)
        budget = active_budget()
        budget.allow_size(sum(len(chunk) for chunk in chunks), "a block")
        return budget.built("".join(chunks))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = active_budget()
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
        budget = active_budget()
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
    budget: Budget, what: str, args: Iterable[Any], kwargs: Mapping[str, Any]
) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool):
            budget.allow_size(value, what)


def _check_printf(budget: Budget, template: str, values: Iterable[Any]) -> None:
    for match in _PERCENT_SPEC.finditer(template):
        if "*" in match.groups():
            _check_widths(budget, "a * width", values, {})
        for number in match.groups():
            if number and number != "*":
                budget.allow_size(int(number), "a % format width")


def _check_format_spec(budget: Budget, template: str, values: Iterable[Any]) -> None:
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
        budget = active_budget()
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
