"""The subset of Prometheus alert templates a spec may use, and a renderer that matches Go's output.

Generated promtool tests assert annotations exactly, so the generator must render them the way
Prometheus does. Rather than embed a Go-template engine, specs are limited to the constructs
below; anything else is rejected when the spec is loaded, with the list of what is supported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

SUPPORTED = (
    "{{ $labels.<name> }}, {{ $value }}, {{ $value | humanize }}, {{ $value | humanize1024 }}, "
    "{{ $value | humanizePercentage }}, {{ $value | humanizeDuration }}, "
    '{{ $value | printf "%.Nf" }}'
)

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LABEL = re.compile(r"^\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)$")
_FUNCS = ("humanize", "humanize1024", "humanizePercentage", "humanizeDuration")
_PIPE = re.compile(r"^\$value\s*\|\s*(" + "|".join(_FUNCS) + r")$")
_CALL = re.compile(r"^(" + "|".join(_FUNCS) + r")\s+\$value$")
_PRINTF_PIPE = re.compile(r'^\$value\s*\|\s*printf\s+"%\.(\d)f"$')
_PRINTF_CALL = re.compile(r'^printf\s+"%\.(\d)f"\s+\$value$')


@dataclass(frozen=True)
class _Action:
    kind: str  # "label", "value", one of _FUNCS, or "printf"
    arg: str = ""


_Part = str | _Action


def _parse_action(inner: str) -> _Action:
    text = inner.strip()
    if (m := _LABEL.match(text)) is not None:
        return _Action("label", m.group(1))
    if text == "$value":
        return _Action("value")
    if (m := _PIPE.match(text) or _CALL.match(text)) is not None:
        return _Action(m.group(1))
    if (m := _PRINTF_PIPE.match(text) or _PRINTF_CALL.match(text)) is not None:
        return _Action("printf", m.group(1))
    raise ValueError(f"unsupported template action '{{{{{inner}}}}}' (supported: {SUPPORTED})")


def parse_template(text: str) -> list[_Part]:
    """Split a template into literal text and actions; `ValueError` for anything unsupported."""
    parts: list[_Part] = []
    pos = 0
    for match in _ACTION.finditer(text):
        literal = text[pos : match.start()]
        parts.append(literal)
        parts.append(_parse_action(match.group(1)))
        pos = match.end()
    parts.append(text[pos:])
    for part in parts:
        if isinstance(part, str) and ("{{" in part or "}}" in part):
            raise ValueError("unbalanced '{{' / '}}' in template")
    return [p for p in parts if p != ""]


def labels_used(text: str) -> list[str]:
    """Label names the template reads through `$labels`, sorted and unique."""
    return sorted(
        {p.arg for p in parse_template(text) if isinstance(p, _Action) and p.kind == "label"}
    )


def render(text: str, labels: dict[str, str], value: float) -> str:
    """Expand the template as Prometheus would for an alert with `labels` and `$value`."""
    out: list[str] = []
    for part in parse_template(text):
        if isinstance(part, str):
            out.append(part)
        elif part.kind == "label":
            # Prometheus' $labels is a map[string]string: a missing key renders as "".
            out.append(labels.get(part.arg, ""))
        elif part.kind == "value":
            out.append(go_float(value))
        elif part.kind == "printf":
            out.append(f"{value:.{int(part.arg)}f}")
        else:
            out.append(_HUMANIZERS[part.kind](value))
    return "".join(out)


def go_float(value: float) -> str:
    """Go's `%v` for a float64: shortest digits, exponent form below 1e-4 and from 1e6 up
    (strconv's 'g' with the shortest precision decides with precision 6)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    # decimal exponent of the first digit, e.g. 123.4 → 2
    first_exp = len(digit_tuple) + exponent - 1
    prefix = "-" if sign else ""
    if first_exp < -4 or first_exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if first_exp < 0 else '+'}{abs(first_exp):02d}"
    if first_exp < 0:
        return f"{prefix}0.{'0' * (-first_exp - 1)}{digits}"
    whole = digits[: first_exp + 1].ljust(first_exp + 1, "0")
    frac = digits[first_exp + 1 :]
    return f"{prefix}{whole}{'.' + frac if frac else ''}"


def _g4(value: float) -> str:
    # Go's "%.4g" and Python's agree on finite values; only the spelling of inf/nan differs.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def humanize(value: float) -> str:
    """Prometheus `humanize`: SI prefixes with 4 significant digits (1234567 → 1.235M)."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    if abs(value) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < 1000:
                break
            prefix = p
            value /= 1000
        return f"{_g4(value)}{prefix}"
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return f"{_g4(value)}{prefix}"


def humanize1024(value: float) -> str:
    """Prometheus `humanize1024`: binary prefixes (1536 → 1.5ki)."""
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix = p
        value /= 1024
    return f"{_g4(value)}{prefix}"


def humanize_percentage(value: float) -> str:
    """Prometheus `humanizePercentage`: a ratio as a percentage (0.1234 → 12.34%)."""
    return f"{_g4(value * 100)}%"


def humanize_duration(value: float) -> str:
    """Prometheus `humanizeDuration`: seconds as `1d 2h 3m 4s`, `5.5s` or `250ms`."""
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return f"{_g4(value)}s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds, minutes = whole % 60, (whole // 60) % 60
        hours, days = (whole // 3600) % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{_g4(value)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = p
        value *= 1000
    return f"{_g4(value)}{prefix}s"


_HUMANIZERS = {
    "humanize": humanize,
    "humanize1024": humanize1024,
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
}
