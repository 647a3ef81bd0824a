"""PromQL built from outside text: the check an alert's own expression passes before it is run,
the string literal that keeps a label value a value, and scoping an expression to one alert.

An alert's generatorURL is written by whoever can push alerts, so its `g0.expr` is run only when
it is one bounded expression; otherwise the caller shows `problem` instead of querying.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

MAX_EXPR = 2_000  # characters; generated rules are far shorter, a larger one is not ours
# PromQL's lexer treats these as blanks; every other control or format character is refused.
_BLANKS = frozenset(" \t\n\r")
_PAIRS = {")": "(", "]": "[", "}": "{"}
# Prometheus writes `g0.expr`; the others are what hand-made links use.
_EXPR_KEYS = ("g0.expr", "expr", "query")


@dataclass(frozen=True)
class AlertExpression:
    """The expression of an alert's generatorURL: `expr` when usable, else why not.

    Both empty: the URL holds no expression. `problem` set: there was one and it is not run.
    """

    expr: str = ""
    problem: str = ""


def expression_problem(expr: str, limit: int = MAX_EXPR) -> str:
    """Why `expr` is not one bounded PromQL expression ("" when it is).

    Not a parser: it refuses what can never be a single expression (a `;` outside a string,
    unbalanced brackets, an open string) and what has no place in one (control characters),
    and leaves the grammar to Prometheus, whose refusal becomes a note as well.
    """
    if not expr.strip():
        return "the expression is empty"
    if len(expr) > limit:
        return f"the expression has {len(expr):,} characters, over the {limit:,} limit"
    for ch in expr:
        if ch not in _BLANKS and unicodedata.category(ch)[0] == "C":
            return f"the expression holds a control character (U+{ord(ch):04X})"
    stack: list[str] = []
    quote = ""
    escaped = False
    comment = False
    for ch in expr:
        if comment:
            comment = ch != "\n"
        elif quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote != "`":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch == ";":
            return "the expression holds ';': only one expression is run"
        elif ch in "([{":
            stack.append(ch)
        elif ch in _PAIRS and (not stack or stack.pop() != _PAIRS[ch]):
            return f"the expression has an unmatched {ch!r}"
    if quote:
        return "the expression has an unterminated string"
    if stack:
        return f"the expression has an unclosed {stack[-1]!r}"
    return ""


def generator_expression(url: str, limit: int = MAX_EXPR) -> AlertExpression:
    """The PromQL expression in a Prometheus generatorURL (`/graph?g0.expr=...`), checked."""
    if not url:
        return AlertExpression()
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return AlertExpression()
    for key in _EXPR_KEYS:
        if query.get(key):
            raw = query[key][0]
            problem = expression_problem(raw, limit)
            if problem:
                return AlertExpression(problem=problem)
            return AlertExpression(expr=raw.strip())
    return AlertExpression()


def promql_string(value: str) -> str:
    """A PromQL string literal: JSON escaping is a subset of what PromQL's parser accepts."""
    return json.dumps(value, ensure_ascii=False)


_CLASSIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def label_name(name: str) -> str:
    """A label name as PromQL takes it: bare when it is a classic identifier, else quoted.

    Prometheus 3 accepts any UTF-8 name quoted inside braces (`{"service.name"="x"}`); a
    classic name stays bare, so the selectors we build still run on Prometheus 2.
    """
    return name if _CLASSIC_NAME.fullmatch(name) else promql_string(name)


def label_matcher(name: str, value: str, op: str = "=") -> str:
    """`name="value"` (the name quoted when it must be); `op` is one of =, !=, =~, !~."""
    return f"{label_name(name)}{op}{promql_string(value)}"


def scoped(expr: str, labels: Mapping[str, str]) -> str:
    """`expr` restricted to the series with the alert's instance/job (when it carries them).

    `and on (instance) label_replace(vector(1), "instance", "<value>", "", "")` filters in
    Prometheus, so an expression over thousands of series answers with the alert's own; the
    value only ever appears as a string literal (`$` doubled: it is a replacement template).
    """
    keys = [k for k in ("instance", "job") if labels.get(k)]
    if not keys:
        return expr
    vector = "vector(1)"
    for key in keys:
        replacement = labels[key].replace("$", "$$")
        vector = f'label_replace({vector}, "{key}", {promql_string(replacement)}, "", "")'
    return f"({expr}) and on ({', '.join(keys)}) {vector}"
