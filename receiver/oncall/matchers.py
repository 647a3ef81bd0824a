"""Alertmanager's label matcher syntax: `service="checkout"`, `severity=~"critical|high"`,
`instance!="x"`, `job!~"test.*"`, several joined by commas, optionally inside `{...}`.

Semantics are Alertmanager's: a missing label matches as the empty string, and a regex is
anchored at both ends (`^(?:re)$`). Regexes are Python's, limited to what RE2 (Alertmanager's
engine) also accepts and to shapes without catastrophic backtracking: a nested repeat
(`(a+)+`), an alternation under a repeat (`(a|b)*`) or more than MAX_UNBOUNDED unbounded repeats
is refused, as are back-references and look-arounds (RE2 has neither). The same labels build
the filter of an Alertmanager UI link (`silence_link`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

MAX_FILTER = 1024  # characters of a whole filter
MAX_MATCHERS = 16
MAX_REGEX = 256  # characters of one regex
MAX_UNBOUNDED = 3  # `*`, `+`, `{n,}` in one regex
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}

try:  # Python 3.11 names the regex parser `re._parser`; its constants moved with it
    from re import _constants as _sre_const  # type: ignore[attr-defined, unused-ignore]
    from re import _parser as _sre_parse  # type: ignore[attr-defined, unused-ignore]
except ImportError:  # pragma: no cover - older layouts
    import sre_constants as _sre_const
    import sre_parse as _sre_parse


class MatcherError(ValueError):
    """A filter that does not parse or a regex refused; the message says which part."""


class Op(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is Op.EQ:
            return actual == self.value
        if self.op is Op.NE:
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op is Op.RE else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{quote_value(self.value)}"


def quote_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _walk(items: Iterable[Any], in_repeat: bool, counts: list[int]) -> None:
    """Refuse the shapes that make a backtracking engine exponential (see the module doc)."""
    for op, arg in items:
        if op in (_sre_const.GROUPREF, _sre_const.GROUPREF_EXISTS):
            raise MatcherError("back-references are not supported (Alertmanager uses RE2)")
        if op in (_sre_const.ASSERT, _sre_const.ASSERT_NOT):
            raise MatcherError("look-arounds are not supported (Alertmanager uses RE2)")
        if op in (_sre_const.MAX_REPEAT, _sre_const.MIN_REPEAT, _sre_const.POSSESSIVE_REPEAT):
            low, high, body = arg
            del low
            if in_repeat:
                raise MatcherError("a repeat inside a repeat could take exponential time")
            if high == _sre_const.MAXREPEAT:
                counts[0] += 1
            _walk(body, True, counts)
        elif op is _sre_const.SUBPATTERN:
            _walk(arg[-1], in_repeat, counts)
        elif op is _sre_const.BRANCH:
            if in_repeat:
                raise MatcherError("an alternation inside a repeat could take exponential time")
            for branch in arg[1]:
                _walk(branch, in_repeat, counts)
        elif op is _sre_const.ATOMIC_GROUP:
            _walk(arg, in_repeat, counts)


def compile_regex(raw: str) -> re.Pattern[str]:
    if len(raw) > MAX_REGEX:
        raise MatcherError(f"regex longer than {MAX_REGEX} characters")
    try:
        parsed = _sre_parse.parse(raw)
        pattern = re.compile(f"(?:{raw})")
    except (re.error, RecursionError, OverflowError) as err:
        raise MatcherError(f"invalid regex {raw[:60]!r}: {err}") from err
    counts = [0]
    _walk(parsed, False, counts)
    if counts[0] > MAX_UNBOUNDED:
        raise MatcherError(f"at most {MAX_UNBOUNDED} unbounded repeats (*, +) in one regex")
    return pattern


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The value of the double-quoted string starting at `start`, and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in _ESCAPES:
                raise MatcherError(f"bad escape at position {i + 1}")
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise MatcherError("unterminated quoted value")


def parse_matchers(raw: str) -> list[Matcher]:
    """`a="b", c=~"d|e"` (braces optional) → matchers; `MatcherError` names the bad part."""
    if len(raw) > MAX_FILTER:
        raise MatcherError(f"longer than {MAX_FILTER} characters")
    text = raw.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise MatcherError("a filter that opens with { must close with }")
        text = text[1:-1]
    matchers: list[Matcher] = []
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        name_match = _NAME.match(text, i)
        if name_match is None:
            raise MatcherError(f"expected a label name at position {i + 1}: {text[i : i + 20]!r}")
        name = name_match.group()
        i = name_match.end()
        while i < n and text[i] == " ":
            i += 1
        op = next((o for o in (Op.RE, Op.NRE, Op.NE, Op.EQ) if text.startswith(o.value, i)), None)
        if op is None:
            raise MatcherError(f"expected =, !=, =~ or !~ after {name!r}")
        i += len(op.value)
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            value, i = _quoted(text, i)
        else:
            end = i
            while end < n and text[end] != ",":
                end += 1
            value = text[i:end].strip()
            if '"' in value:
                raise MatcherError(f"unbalanced quote in the value of {name!r}")
            i = end
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] != ",":
            raise MatcherError(f"expected , after the matcher on {name!r}")
        pattern = compile_regex(value) if op in (Op.RE, Op.NRE) else None
        matchers.append(Matcher(name, op, value, pattern))
        if len(matchers) > MAX_MATCHERS:
            raise MatcherError(f"at most {MAX_MATCHERS} matchers")
    if not matchers:
        raise MatcherError("no matcher given")
    return matchers


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def filter_text(labels: Mapping[str, str]) -> str:
    """`{a="b",c="d"}`: equality matchers on `labels`, as Alertmanager's UI filter takes them."""
    return "{" + ",".join(f"{k}={quote_value(v)}" for k, v in sorted(labels.items())) + "}"


def silence_link(external_url: str, labels: Mapping[str, str]) -> str:
    """Alertmanager's "new silence" form pre-filled with `labels`; "" without both."""
    if not external_url or not labels:
        return ""
    return f"{external_url.rstrip('/')}/#/silences/new?filter={quote(filter_text(labels), safe='')}"
