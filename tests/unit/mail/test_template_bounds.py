"""Rendering stays within bounds while it runs: work, time, size built and size output."""

from __future__ import annotations

import time

import pytest

from email_sender.errors import ValidationError
from email_sender.mail.sandbox import RenderLimits
from email_sender.mail.templates import COMPILED_CACHE_MAX_SOURCE, TemplateIn, TemplateRenderer

# Generous for a loaded 2-core machine; unbounded, every template below runs for minutes or
# exhausts memory.
ANSWER_WITHIN = 2.0

NESTED_LOOPS = (
    "{% for a in range(50000) %}{% for b in range(50000) %}x{% endfor %}{% endfor %}"
)


def refusal(
    source: str, renderer: TemplateRenderer | None = None, part: str = "text"
) -> tuple[ValidationError, float]:
    started = time.monotonic()
    with pytest.raises(ValidationError) as caught:
        (renderer or TemplateRenderer()).render(TemplateIn(**{part: source}), {})
    return caught.value, time.monotonic() - started


def test_nested_loops_are_refused_quickly_naming_the_field() -> None:
    error, took = refusal(NESTED_LOOPS)
    assert error.field == "template.text"
    assert error.reason.startswith("over the rendering limit: ")
    assert took < ANSWER_WITHIN


def test_loops_that_print_nothing_are_refused_by_the_operation_count() -> None:
    renderer = TemplateRenderer(limits=RenderLimits(seconds=600, operations=100_000))
    error, took = refusal(
        "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}",
        renderer,
        part="html",
    )
    assert error.field == "template.html"
    assert error.reason == "over the rendering limit: more than 100000 operations"
    assert took < ANSWER_WITHIN


def test_work_without_loops_is_stopped_by_the_time_limit() -> None:
    # 2**40 macro calls and not one loop: only the deadline stops it.
    renderer = TemplateRenderer(limits=RenderLimits(seconds=0.3, operations=10**12))
    error, took = refusal(
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
        renderer,
        part="subject",
    )
    assert error.field == "template.subject"
    assert "took longer than 0.3 s" in error.reason
    assert took < ANSWER_WITHIN


def test_huge_output_is_refused_while_rendering() -> None:
    # 10**13 characters if it ran to the end: the size is counted as the chunks come out.
    renderer = TemplateRenderer(
        limits=RenderLimits(seconds=600, operations=10**12, max_output_chars=1_000_000)
    )
    error, took = refusal(
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ 'y' * 1000 }}"
        "{% endfor %}{% endfor %}",
        renderer,
    )
    assert error.reason == "renders to more than 1000000 characters"
    assert took < ANSWER_WITHIN


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("{{ 'x'|center(1000000000) }}", "filter center"),
        ("{{ 'x'.zfill(1000000000) }}", "zfill"),
        ("{{ '%1000000000s' % 'x' }}", "% format width"),
        ("{{ '%1000000000s'|format('x') }}", "% format width"),
        ("{{ '{:>1000000000}'.format('x') }}", "format width"),
        ("{{ '{:>{w}}'.format('x', w=1000000000) }}", "nested format width"),
        ("{{ ('a' * 100000)|replace('a', 'b' * 100000) }}", "filter replace"),
        ("{{ (['" + "y" * 1000 + "'] * 100000)|join }}", "filter join"),
        ("{{ [1]|batch(1000000000, 'x')|list }}", "filter batch"),
        ("{{ [1]|slice(1000000000)|list }}", "filter slice"),
        # Doubling a value: each step is small, the sum is not.
        ("{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(60) %}"
         "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}", "builds more than"),
        ("{% set a = 'x' * 100000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}"
         "{% set e = d ~ d %}{% set f = e ~ e %}{% set g = f ~ f %}{{ g|length }}",
         "builds more than"),
        ("{% set l = ['x'] %}{% for i in range(40) %}{{ l.extend(l) or '' }}{% endfor %}",
         "extend builds more than"),
        ("{% set v %}{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}{% endset %}"
         "{{ v|length }}", "in all"),
    ],
)
def test_operations_that_build_large_values_are_refused_before_memory_runs_out(
    source: str, why: str
) -> None:
    error, took = refusal(source)
    assert error.field == "template.text"
    assert "over the rendering limit" in error.reason
    assert why in error.reason
    assert took < ANSWER_WITHIN


def test_a_shared_deadline_refuses_once_spent() -> None:
    renderer = TemplateRenderer().within(time.monotonic() - 1)
    error, _ = refusal("{% for n in range(3) %}{{ n }}{% endfor %}", renderer)
    assert error.field == "template.text"
    assert "the time for rendering this batch is spent" in error.reason
    # The renderer it came from keeps its own deadline per render.
    assert TemplateRenderer().render(TemplateIn(text="{{ 1 }}"), {}).text == "1"


def test_limits_apply_to_all_parts_of_an_email_together() -> None:
    renderer = TemplateRenderer(limits=RenderLimits(operations=300))
    loop = "{% for n in range(100) %}{{ n }}{% endfor %}"
    assert renderer.render(TemplateIn(text=loop), {}).text
    with pytest.raises(ValidationError) as caught:
        renderer.render(TemplateIn(text=loop, html=loop), {})
    assert caught.value.field == "template.html"


def test_lorem_ipsum_is_not_offered() -> None:
    error, _ = refusal("{{ lipsum(1000000) }}")
    assert error.field == "variables.lipsum"


def test_absurd_nesting_is_a_validation_error() -> None:
    error, _ = refusal("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")
    assert error.field == "template.text"


def test_unknown_filter_is_reported_with_its_line() -> None:
    error, _ = refusal("line one\n{{ 1|no_such_filter }}")
    assert error.field == "template.text"
    assert "line 2" in error.reason


def test_ordinary_templates_render_as_before() -> None:
    renderer = TemplateRenderer()
    template = TemplateIn(
        subject="Hi {{ name|title }}",
        text="{% for i in items %}{{ loop.index }}/{{ loop.length }} {{ i.name }}"
        " {{ '%05.2f' % i.price }} [{{ '{:>5}'.format(i.name) }}]"
        "{% if not loop.last %}, {% endif %}{% endfor %};"
        " {{ items|map(attribute='name')|join(', ') }} {{ 'a-b'|replace('-', '+') }}",
        html="<p>{{ name }}</p>{% set ns = namespace(total=0) %}"
        "{% for i in items %}{% set ns.total = ns.total + i.price %}{% endfor %}{{ ns.total }}",
    )
    variables = {"name": "ann <x>", "items": [{"name": "tea", "price": 2.5},
                                             {"name": "cake", "price": 3}]}
    for _ in range(2):  # the second time from the compiled-template cache
        rendered = renderer.render(template, variables)
        assert rendered.subject == "Hi Ann <X>"
        assert rendered.text == ("1/2 tea 02.50 [  tea], 2/2 cake 03.00 [ cake]; tea, cake a+b")
        assert rendered.html == "<p>ann &lt;x&gt;</p>5.5"


def test_a_large_but_allowed_output_renders() -> None:
    rendered = TemplateRenderer().render(
        TemplateIn(text="{% for n in range(1000) %}{{ 'z' * 1000 }}{% endfor %}"), {}
    )
    assert rendered.text == "z" * 1_000_000


def test_only_small_templates_are_kept_compiled() -> None:
    renderer = TemplateRenderer()
    small = TemplateIn(text="Hello {{ name }}")
    large = TemplateIn(text="Hello {{ name }}" + "x" * (COMPILED_CACHE_MAX_SOURCE + 1))
    assert renderer.render(large, {"name": "Ann"}).text.startswith("Hello Ann")
    assert len(renderer._cache) == 0
    renderer.render(small, {"name": "Ann"})
    assert len(renderer._cache) == 1
