"""Files for a real Prometheus: ``prometheus.yml`` (scrape targets) and ``rules.yml``.

``prometheus.yml`` scrapes the monitor's ``/metrics`` (everything the monitor scraped
from the cluster, with its ``job``/``instance`` labels kept: ``honor_labels``) and
Marathon's own ``/metrics/prometheus``; the Mesos masters' and agents' metrics are JSON
(``/metrics/snapshot``) that Prometheus cannot read without an exporter, so they come
through the monitor. ``rules.yml`` is the cluster's rule file without the kit's
``remediation`` keys (Prometheus rejects unknown keys). When ``promtool`` is on
``PATH`` both files are checked with it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from playground.cluster.statedir import StateDir
from playground.monitor import promql
from playground.monitor import rules as rules_mod
from playground.monitor.server import SCRAPE_INTERVAL

CONFIG_FILE = "prometheus.yml"
RULES_FILE = "rules.yml"


@dataclass
class Check:
    """One ``promtool`` run."""

    command: list[str]
    ok: bool
    output: str

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "ok": self.ok, "output": self.output}


@dataclass
class Export:
    """What :func:`export` wrote and how ``promtool`` judged it."""

    files: list[Path]
    checks: list[Check] = field(default_factory=list)
    promtool: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [str(f) for f in self.files],
            "promtool": self.promtool,
            "checks": [c.to_dict() for c in self.checks],
            "ok": self.ok,
        }


def _targets(rec: dict[str, Any], role: str) -> list[tuple[str, str]]:
    out = []
    for name, node in sorted(rec.get("nodes", {}).items()):
        if node.get("role") == role:
            a = rec["addresses"][name]
            out.append((name, f"{a['host']}:{a['port']}"))
    return out


def prometheus_config(rec: dict[str, Any], rules_file: str = RULES_FILE) -> dict[str, Any]:
    """The scrape configuration of a cluster record (``cluster.json``)."""
    interval = promql.format_duration(SCRAPE_INTERVAL)
    scrape: list[dict[str, Any]] = []
    monitors = _targets(rec, "monitor")
    if monitors:
        scrape.append(
            {
                "job_name": "playground-monitor",
                "honor_labels": True,
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": [hp], "labels": {"node": name}} for name, hp in monitors
                ],
            }
        )
    marathons = _targets(rec, "marathon")
    if marathons:
        scrape.append(
            {
                "job_name": "marathon-direct",
                "metrics_path": "/metrics/prometheus",
                "static_configs": [
                    {"targets": [hp], "labels": {"node": name}} for name, hp in marathons
                ],
            }
        )
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "external_labels": {"cluster": str(rec.get("name", "playground"))},
        },
        "rule_files": [rules_file],
        "scrape_configs": scrape,
    }


def _dump(data: Any, header: str) -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
    return "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body


def export(state_dir: Path | str, out: Path | str, check: bool = True) -> Export:
    """Write ``prometheus.yml`` and ``rules.yml`` for the cluster of ``state_dir`` into ``out``.

    Raises:
        StateDirError: there is no cluster in ``state_dir``.
        RuleFileError: the cluster's rule file is not valid (nothing is written).
    """
    state = StateDir(state_dir)
    rec = state.read()
    src = rules_mod.state_rules_path(state.root)
    if not src.exists():
        src = rules_mod.shipped_path()
    rules_mod.load(src)  # refuse to export a file the monitor itself rejects
    data = yaml.safe_load(src.read_text())
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = rec.get("time_scale", 1)
    rules_path = out_dir / RULES_FILE
    rules_path.write_text(
        _dump(
            rules_mod.strip_kit_keys(data),
            f"Alert rules of the playground cluster {rec.get('name')} (from {src}),\n"
            "written by `playground monitoring export` for a real Prometheus\n"
            "(the kit's `remediation` keys are left out). Durations are real-cluster\n"
            f"seconds; the embedded cluster runs them {scale:g} times faster.",
        )
    )
    config_path = out_dir / CONFIG_FILE
    config_path.write_text(
        _dump(
            prometheus_config(rec),
            f"Prometheus scrape configuration of the playground cluster in {state.root},\n"
            "written by `playground monitoring export`. The monitor's /metrics carries\n"
            "everything it scraped (the Mesos metrics are JSON, not Prometheus text),\n"
            "so it is scraped with honor_labels; Marathon is also scraped directly.",
        )
    )
    result = Export([config_path, rules_path])
    promtool = shutil.which("promtool")
    result.promtool = promtool
    if check and promtool:
        for args in (["check", "rules", str(rules_path)], ["check", "config", str(config_path)]):
            cmd = [promtool, *args]
            try:
                cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
                result.checks.append(
                    Check(cmd, cp.returncode == 0, (cp.stdout + cp.stderr).strip())
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                result.checks.append(Check(cmd, False, str(exc)))
    return result
