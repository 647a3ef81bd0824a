"""Alert expressions by alertname from generated rule files, and the `<op> <number>` an
expression ends with (so the value itself can be graphed against its threshold)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleIndex:
    """Alert expressions by alertname, read from generated Prometheus rule files."""

    alerts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> RuleIndex:
        """Read `directory/*.yml`; a missing directory or a broken file is skipped, logged."""
        alerts: dict[str, str] = {}
        if not directory.is_dir():
            return cls(alerts)
        for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                log.warning("rule file %s skipped: %s", path, err)
                continue
            groups = doc.get("groups") if isinstance(doc, dict) else None
            for group in groups if isinstance(groups, list) else []:
                rules = group.get("rules") if isinstance(group, dict) else None
                for rule in rules if isinstance(rules, list) else []:
                    if not isinstance(rule, dict):
                        continue
                    name, expr = rule.get("alert"), rule.get("expr")
                    if isinstance(name, str) and isinstance(expr, str) and expr.strip():
                        alerts.setdefault(name, " ".join(expr.split()))
        return cls(alerts)


FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
_COMPARE: dict[str, np.ufunc] = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


@dataclass(frozen=True)
class Threshold:
    """The `<op> <number>` an alert expression ends with (`x > 80`)."""

    op: str
    value: float

    def holds(self, values: FloatArray) -> BoolArray:
        compare = _COMPARE[self.op]
        with np.errstate(invalid="ignore"):
            result: BoolArray = compare(values, self.value)
        return result

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


_COMPARISON = re.compile(
    r"^(?P<lhs>.+?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?:bool\s+)?"
    r"(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$",
    re.DOTALL,
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PARENS = re.compile(r"\([^()]*\)")
_MATCHERS = re.compile(r"\{[^{}]*\}")  # label matchers may hold =, != and =~
_SET_OPERATOR = re.compile(r"\b(and|or|unless)\b|[<>=!]=|[<>]", re.IGNORECASE)


def split_threshold(expr: str) -> tuple[str, Threshold | None]:
    """`lhs <op> number` → (lhs, threshold) so the value itself can be graphed; else (expr, None).

    Only splits when the comparison is the outermost operator: the left side has balanced
    brackets and no other comparison or set operator (`a and b > 5` is left alone).
    """
    match = _COMPARISON.match(expr.strip())
    if match is None:
        return expr.strip(), None
    lhs = match.group("lhs").strip()
    bare = _QUOTED.sub('""', lhs)
    balanced = all(bare.count(a) == bare.count(b) for a, b in ("()", "{}", "[]"))
    if not lhs or not balanced:
        return expr.strip(), None
    outer = _MATCHERS.sub("{}", bare)
    while (inner := _PARENS.sub("_", outer)) != outer:  # only the top level decides
        outer = inner
    if _SET_OPERATOR.search(outer):
        return expr.strip(), None
    return lhs, Threshold(match.group("op"), float(match.group("num")))
