"""Prometheus's text exposition format (0.0.4): render samples, parse a scraped page."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from playground.monitor.promql import NAME, Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?\s*$")
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_INVALID = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(raw: str) -> str:
    """A valid metric name from any string (``master/slaves_active`` -> ``master_slaves_active``)."""
    name = _INVALID.sub("_", raw)
    return name if re.match(r"^[a-zA-Z_:]", name) else "_" + name


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(samples: Iterable[Sample], help_text: dict[str, str] | None = None) -> str:
    """Samples as a Prometheus text page, grouped by metric name (``# TYPE`` untyped)."""
    by_name: dict[str, list[Sample]] = {}
    for s in samples:
        by_name.setdefault(s.labels.get(NAME, ""), []).append(s)
    lines: list[str] = []
    for name in sorted(by_name):
        if not name:
            continue
        if help_text and name in help_text:
            lines.append(f"# HELP {name} {help_text[name]}")
        kind = "counter" if name.endswith("_total") else "gauge"
        lines.append(f"# TYPE {name} {kind}")
        for s in sorted(by_name[name], key=lambda x: sorted(x.labels.items())):
            labels = ",".join(
                f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()) if k != NAME
            )
            lines.append(
                f"{name}{{{labels}}} {format_float(s.value)}"
                if labels
                else f"{name} {format_float(s.value)}"
            )
    return "\n".join(lines) + "\n"


def parse(text: str) -> list[Sample]:
    """The samples of a text page (comments and malformed lines are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        labels = {NAME: m.group(1)}
        if m.group(3):
            for k, v in _PAIR.findall(m.group(3)):
                labels[k] = _unescape(v)
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out.append(Sample(labels, value))
    return out
