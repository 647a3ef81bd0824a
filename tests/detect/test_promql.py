"""The check an alert's generatorURL expression passes before it is run, and PromQL scoping."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from receiver.detect.promql import (
    MAX_EXPR,
    AlertExpression,
    expression_problem,
    generator_expression,
    label_matcher,
    promql_string,
    scoped,
)
from receiver.enrich.candidates import Family, query_of


def _url(expr: str) -> str:
    return f"http://prom:9090/graph?g0.expr={quote_plus(expr)}&g0.tab=1"


@pytest.mark.parametrize(
    "expr",
    [
        "up == 0",
        'sum by (job) (rate(http_requests_total{code=~"5..", path="/a;b"}[5m])) > 1',
        "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))\n  > 2",
        "x{a='(', b=`}`} # a comment; with ( and ;\n> 1",
        'x{a="say \\"hi\\"; ok"}',
    ],
)
def test_one_bounded_expression_passes(expr: str) -> None:
    """Strings, comments and newlines may hold `;` and brackets; one expression passes."""
    assert expression_problem(expr) == ""
    assert generator_expression(_url(expr)) == AlertExpression(expr=expr.strip())


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("up; drop", "the expression holds ';': only one expression is run"),
        ("   ", "the expression is empty"),
        ("up\x00", "the expression holds a control character (U+0000)"),
        ("up\u202e", "the expression holds a control character (U+202E)"),
        ('up{a="b}', "the expression has an unterminated string"),
        ("sum(up", "the expression has an unclosed '('"),
        ("up)", "the expression has an unmatched ')'"),
        ("rate(up[5m)]", "the expression has an unmatched ')'"),
        (
            "up + " * 2_000,
            f"the expression has 10,000 characters, over the {MAX_EXPR:,} limit",
        ),
    ],
)
def test_what_is_not_one_bounded_expression_is_refused(expr: str, problem: str) -> None:
    """Each refusal names why; the generatorURL then yields no expression at all."""
    assert expression_problem(expr) == problem
    assert generator_expression(_url(expr)) == AlertExpression(problem=problem)


def test_expression_at_the_length_limit_passes_and_one_over_does_not() -> None:
    """The cap is inclusive: MAX_EXPR characters pass, one more is refused."""
    at_limit = "x" * MAX_EXPR
    assert expression_problem(at_limit) == ""
    assert expression_problem(at_limit + "x") != ""


def test_scoping_keeps_hostile_values_inside_string_literals() -> None:
    """Quotes, `$1` and backslashes in a label value stay one PromQL string."""
    expr = scoped("up", {"instance": 'a"b$1\\', "job": "node", "other": "x"})
    assert expr == (
        '(up) and on (instance, job) label_replace(label_replace(vector(1), "instance", '
        + promql_string('a"b$$1\\')
        + ', "", ""), "job", "node", "", "")'
    )
    assert scoped("up", {}) == "up"


@pytest.mark.parametrize(
    ("name", "matcher"),
    [
        ("job", 'job="x"'),
        ("_private9", '_private9="x"'),
        ("service.name", '"service.name"="x"'),
        ("9lives", '"9lives"="x"'),
        ('say"hi', '"say\\"hi"="x"'),
        ("значение", '"значение"="x"'),
    ],
)
def test_label_names_are_quoted_unless_classic(name: str, matcher: str) -> None:
    """Classic names stay bare (Prometheus 2); any other name is a quoted string (Prometheus 3)."""
    assert label_matcher(name, "x") == matcher


def test_candidate_queries_quote_utf8_label_names() -> None:
    """The RCA's candidate and recurrence selectors quote a dotted label name."""
    family = Family("http_requests_total", "counter", ("http_requests_total",))
    query = query_of(family, {"service.name": "pay", "job": "api"}, summed=False)
    assert query == 'rate(http_requests_total{job="api", "service.name"="pay"}[5m])'
