"""Loading `rules/specs/*.yml`: YAML without duplicate keys, pydantic validation, then the checks
between fields and files, every problem reported as `file: rule "X": field "y": message`.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from receiver.rulegen import templates
from receiver.rulegen.spec import (
    RESERVED_LABELS,
    STEM,
    RuleSet,
    Spec,
    SpecFile,
    ThresholdRule,
    holds,
    probe_values,
    template_labels,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located as precisely as known."""

    file: str
    message: str
    where: str = ""
    field: str = ""

    def __str__(self) -> str:
        parts = [self.file]
        if self.where:
            parts.append(self.where)
        if self.field:
            parts.append(f'field "{self.field}"')
        return ": ".join([*parts, self.message])


class SpecError(Exception):
    """Specs that cannot be turned into rules; `str()` is one line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# -- loading -----------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_SECTIONS = {"thresholds": ("rule", "name"), "recording": ("recording rule", "record")}


def _where(raw: Any, loc: tuple[int | str, ...]) -> tuple[str, tuple[int | str, ...]]:
    """Split a pydantic location into a human "where" (`rule "X"`) and the rest (the field)."""
    if len(loc) >= 2 and isinstance(loc[0], str) and isinstance(loc[1], int):
        section, index = loc[0], loc[1]
        items = raw.get(section) if isinstance(raw, dict) else None
        item = items[index] if isinstance(items, list) and index < len(items) else None
        kind, key = _SECTIONS.get(section, ("zscore", "series"))
        name = item.get(key) if isinstance(item, dict) else None
        if isinstance(name, str) and name:
            return f'{kind} "{name}"', loc[2:]
        return f"{section}[{index}]", loc[2:]
    return "", loc


def _field(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else part
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class a location points into, to list its fields for an unknown-field error."""
    model: type[BaseModel] = SpecFile
    for part in loc:
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part),
            None,
        )
        if field is None:
            return None
        inner = _find_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _find_model(arg)
            if found is not None:
                return found
    return None


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        model = _model_at(tuple(error["loc"][:-1]))
        allowed = (
            ", ".join(sorted(f.alias or n for n, f in model.model_fields.items()))
            if model is not None
            else ""
        )
        return f"unknown field (allowed: {allowed})" if allowed else "unknown field"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _validation_problems(display: str, raw: Any, err: ValidationError) -> list[Problem]:
    problems = []
    for error in err.errors(include_url=False):
        where, rest = _where(raw, tuple(error["loc"]))
        problems.append(Problem(display, _message(error), where=where, field=_field(rest)))
    return problems


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def load_spec_file(path: Path, root: Path | None = None) -> Spec:
    """Read and validate one spec file (no cross-file checks); `SpecError` on any problem."""
    display = _display(path, root)
    if not STEM.match(path.stem):
        raise SpecError(
            [Problem(display, "file name must be lower-case letters, digits, '-' or '_'")]
        )
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError([Problem(display, f"invalid YAML{at}: {err.problem}")]) from err
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SpecError([Problem(display, f"cannot read: {err}")]) from err
    if not isinstance(raw, dict):
        raise SpecError([Problem(display, "expected a mapping with team, owner, thresholds ...")])
    try:
        model = SpecFile.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_validation_problems(display, raw, err)) from err
    spec = Spec(name=path.stem, display=display, model=model)
    problems = _check_spec(spec)
    if problems:
        raise SpecError(problems)
    return spec


def load_specs(spec_dir: Path, root: Path | None = None) -> RuleSet:
    """Every `*.yml` under `spec_dir`, validated alone and together; all problems at once."""
    paths = sorted(spec_dir.glob("*.yml"), key=lambda p: p.name)
    if not paths:
        raise SpecError([Problem(_display(spec_dir, root), "no *.yml spec files found")])
    specs: list[Spec] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            specs.append(load_spec_file(path, root))
        except SpecError as err:
            problems.extend(err.problems)
    rule_set = RuleSet(tuple(specs))
    problems.extend(_check_rule_set(rule_set))
    if problems:
        raise SpecError(problems)
    return rule_set


# -- relations between fields and files ----------------------------------------------------------


def _check_spec(spec: Spec) -> list[Problem]:
    problems: list[Problem] = []
    model = spec.model
    if not (model.recording or model.zscore or model.thresholds):
        problems.append(Problem(spec.display, "defines no recording, zscore or thresholds rules"))
    for rule in spec.model.thresholds:

        def problem(field: str, message: str, rule: ThresholdRule = rule) -> None:
            problems.append(Problem(spec.display, message, f'rule "{rule.name}"', field))

        if (rule.metric is None) == (rule.expr is None):
            problem("metric", 'give exactly one of "metric" or "expr"')
            continue
        for name in sorted(set(rule.labels) & set(RESERVED_LABELS)):
            problem(f"labels.{name}", f"{name!r} is set by the generator; use the {name} field")
        if rule.expr is not None and (rule.test is None or rule.test.metric is None):
            problem("test.metric", 'is required with "expr": name the series the test drives')
            continue
        quiet, firing = probe_values(rule)
        value = f"{rule.op} {templates.go_float(rule.threshold)}"
        if holds(rule.op, quiet, rule.threshold):
            problem("test.quiet", f"{templates.go_float(quiet)} satisfies {value}; it must not")
        if not holds(rule.op, firing, rule.threshold):
            problem("test.firing", f"{templates.go_float(firing)} does not satisfy {value}")
        if rule.test is not None and rule.test.labels is not None:
            missing = [n for n in template_labels(rule) if n not in rule.test.labels]
            if missing:
                problem(
                    "test.labels", f"missing {', '.join(missing)} (used in summary/description)"
                )
    return problems


def _check_rule_set(rule_set: RuleSet) -> list[Problem]:
    problems: list[Problem] = []
    recorded: dict[str, str] = {}
    for spec in rule_set.specs:
        names = [(r.record, f'recording rule "{r.record}"', "record") for r in spec.model.recording]
        for z in spec.model.zscore:
            for name in (z.avg_record, z.stddev_record, z.zscore_record):
                names.append((name, f'zscore "{z.series}"', "series"))
        for name, where, field in names:
            if name in recorded:
                problems.append(
                    Problem(
                        spec.display,
                        f"{name} is already recorded in {recorded[name]}",
                        where,
                        field,
                    )
                )
            recorded.setdefault(name, spec.display)
    alerts: dict[str, str] = {}
    for spec, rule in rule_set.thresholds():
        if rule.name in alerts:
            problems.append(
                Problem(
                    spec.display,
                    f"duplicate alert name, already defined in {alerts[rule.name]}",
                    f'rule "{rule.name}"',
                    "name",
                )
            )
        alerts.setdefault(rule.name, spec.display)
        if rule.metric is not None and ":" in rule.metric and rule.metric not in recorded:
            problems.append(
                Problem(
                    spec.display,
                    f"unknown recorded series {rule.metric!r} (no recording rule in rules/specs)",
                    f'rule "{rule.name}"',
                    "metric",
                )
            )
    for spec in rule_set.specs:
        for z in spec.model.zscore:
            if ":" in z.series and z.series not in recorded:
                problems.append(
                    Problem(
                        spec.display,
                        f"unknown recorded series {z.series!r} (no recording rule in rules/specs)",
                        f'zscore "{z.series}"',
                        "series",
                    )
                )
    return problems
