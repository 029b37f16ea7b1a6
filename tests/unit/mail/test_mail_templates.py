"""The sandboxed template renderer: output, escaping, and every failure as a ValidationError."""

from __future__ import annotations

import pytest

from email_sender.errors import ValidationError
from email_sender.mail.templates import TemplateIn, TemplateRenderer

renderer = TemplateRenderer()


def render_error(
    template: TemplateIn, variables: dict[str, object] | None = None
) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        renderer.render(template, variables or {})
    return caught.value


def test_renders_each_part_with_variables() -> None:
    rendered = renderer.render(
        TemplateIn(subject="Order {{ order.id }}",
                   text="{% for item in items %}{{ item }};{% endfor %}"),
        {"order": {"id": 42}, "items": ["a", "b"]},
    )
    assert rendered.subject == "Order 42"
    assert rendered.text == "a;b;"
    assert rendered.html is None


def test_html_is_autoescaped_and_text_is_not() -> None:
    rendered = renderer.render(
        TemplateIn(text="{{ v }}", html="<p>{{ v }}</p>"), {"v": "<script>&"}
    )
    assert rendered.text == "<script>&"
    assert rendered.html == "<p>&lt;script&gt;&amp;</p>"


def test_missing_variable_names_it() -> None:
    error = render_error(TemplateIn(text="Hi {{ first_name }} {{ last_name }}"),
                         {"last_name": "Doe"})
    assert error.field == "variables.first_name"
    assert error.reason == "missing template variable"


def test_missing_variable_in_an_untaken_branch_is_still_reported() -> None:
    error = render_error(TemplateIn(text="{% if false %}{{ coupon }}{% endif %}"))
    assert error.field == "variables.coupon"


def test_missing_attribute_is_a_validation_error() -> None:
    error = render_error(TemplateIn(text="{{ user.name }}"), {"user": {}})
    assert error.field == "variables"
    assert "name" in error.reason


def test_loop_and_set_names_are_not_required_variables() -> None:
    rendered = renderer.render(
        TemplateIn(text="{% set greeting = 'hi' %}{% for n in range(3) %}{{ greeting }}"
                        "{{ loop.index }}{% endfor %}"),
        {},
    )
    assert rendered.text == "hi1hi2hi3"


def test_syntax_error_names_the_part_and_line() -> None:
    error = render_error(TemplateIn(subject="ok", html="<p>\n{% if x %}\n</p>"), {"x": 1})
    assert error.field == "template.html"
    assert "line" in error.reason


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ x.__class__.__subclasses__() }}",
    ],
)
def test_sandbox_violations_are_refused(source: str) -> None:
    error = render_error(TemplateIn(text=source), {"x": 1})
    assert error.field == "template.text"


@pytest.mark.parametrize("source", ["{{ 'x' * 10000000 }}", "{{ 2 ** 100000 }}",
                                    "{{ [1] * 1000000 }}"])
def test_resource_exhaustion_is_refused(source: str) -> None:
    error = render_error(TemplateIn(text=source))
    assert error.field == "template.text"
    assert "unsafe" in error.reason


def test_small_arithmetic_still_works() -> None:
    assert renderer.render(TemplateIn(text="{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ 3 * 4 }}"),
                           {}).text == "ababab 1024 12"


def test_runtime_errors_are_validation_errors() -> None:
    error = render_error(TemplateIn(text="{{ 1 / n }}"), {"n": 0})
    assert error.field == "template.text"
    assert "ZeroDivisionError" in error.reason


def test_output_size_limit() -> None:
    small = TemplateRenderer(max_output_chars=5)
    with pytest.raises(ValidationError) as caught:
        small.render(TemplateIn(text="{{ v }}"), {"v": "123456"})
    assert caught.value.field == "template.text"


def test_empty_template_is_refused_by_the_model() -> None:
    with pytest.raises(Exception, match="at least one"):
        TemplateIn()
