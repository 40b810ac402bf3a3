"""Run an experiment through chaostoolkit-lib, keep its journal, judge it.

Everything Chaos Toolkit would write goes into the state directory: the journal of every
run to ``STATE/chaos/journals/<utc-stamp>-<name>.json``, its log to
``STATE/chaos/chaostoolkit.log``. No settings file is read (``~/.chaostoolkit`` is never
touched): the kit passes its own settings, with the rollback strategy ``always`` so that
rollbacks run whatever happened -- a failed steady state, an error, Ctrl-C or SIGTERM.

:func:`verdict` is stricter than chaostoolkit's exit code: a run passes only when its status
is ``completed``, it did not deviate, the steady state was met before (and after) the
method, and no method activity or rollback failed.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from playground.chaos import catalogue
from playground.errors import PlaygroundError

#: The kit's Chaos Toolkit settings: rollbacks run even when a run fails or is aborted.
SETTINGS: dict[str, Any] = {"runtime": {"rollbacks": {"strategy": "always"}}}
LOGGERS = ("chaostoolkit", "chaostoolkit-lib")


class ExperimentInvalid(PlaygroundError):
    """An experiment file cannot be read, or is not a valid Chaos Toolkit experiment."""


@dataclass
class RunResult:
    name: str
    journal: dict[str, Any]
    path: Path
    ok: bool
    reasons: list[str]
    log: Path
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "journal": str(self.path),
            "log": str(self.log),
            "status": self.journal.get("status"),
            "deviated": bool(self.journal.get("deviated")),
            "ok": self.ok,
            "reasons": self.reasons,
            "duration": self.journal.get("duration"),
        }


# ---- loading --------------------------------------------------------------------------------
def load(name_or_file: str) -> tuple[dict[str, Any], str]:
    """An experiment from a file (JSON or YAML) or the catalogue; and its name."""
    path = Path(name_or_file).expanduser()
    looks_like_file = path.suffix.lower() in (".json", ".yaml", ".yml") or "/" in name_or_file
    if path.is_file() or looks_like_file:
        if not path.is_file():
            raise ExperimentInvalid(
                f"no experiment file {path}",
                hint="shipped experiments: " + ", ".join(catalogue.names()),
            )
        text = path.read_text()
        try:
            data = (
                yaml.safe_load(text)
                if path.suffix.lower() in (".yaml", ".yml")
                else json.loads(text)
            )
        except json.JSONDecodeError as exc:
            raise ExperimentInvalid(
                f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                hint="an experiment is a JSON object as in playground/chaos/catalogue/*.json",
            ) from None
        except yaml.YAMLError as exc:
            raise ExperimentInvalid(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ExperimentInvalid(
                f"{path} holds a {type(data).__name__}, not an experiment (a JSON object)"
            )
        return data, path.stem
    entry = catalogue.find(name_or_file)
    return catalogue.load(entry.name), entry.name


def validate(experiment: dict[str, Any]) -> None:
    """chaostoolkit-lib's validation, as a kit error naming what is wrong."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    try:
        ensure_experiment_is_valid(experiment)
    except ChaosException as exc:
        raise ExperimentInvalid(
            f"invalid experiment: {exc}",
            hint="see https://chaostoolkit.org/reference/api/experiment/ and the shipped "
            "experiments in playground/chaos/catalogue/ (`playground chaos list`)",
        ) from None


# ---- judging ----------------------------------------------------------------------------------
def _failed_probe(state: dict[str, Any] | None) -> str:
    for run in (state or {}).get("probes") or []:
        name = (run.get("activity") or {}).get("name", "?")
        if run.get("status") != "succeeded":
            return f"probe {name} failed: {run.get('exception') and _last_line(run['exception'])}"
        if run.get("tolerance_met") is False:
            want = (run.get("activity") or {}).get("tolerance")
            return f"probe {name} returned {run.get('output')!r}, expected {want!r}"
    return "a probe was not within its tolerance"


def _last_line(exc: Any) -> str:
    lines = exc if isinstance(exc, list) else [str(exc)]
    text = "".join(str(x) for x in lines).strip().splitlines()
    return text[-1] if text else ""


def verdict(journal: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a run passed, and why not."""
    reasons: list[str] = []
    status = journal.get("status")
    experiment = journal.get("experiment") or {}
    dry = experiment.get("dry")
    if status != "completed":
        reasons.append(f"the run ended {status!r}, not 'completed'")
    states = journal.get("steady_states") or {}
    hypothesis = (experiment.get("steady-state-hypothesis") or {}).get("probes")
    before, after = states.get("before"), states.get("after")
    if hypothesis and not dry:
        if before is None:
            if status == "completed":
                reasons.append("the steady state was not checked before the method")
        elif not before.get("steady_state_met"):
            reasons.append(
                "the steady state was not met before the method: " + _failed_probe(before)
            )
        if before and before.get("steady_state_met") and status == "completed" and after is None:
            reasons.append("the steady state was not checked after the method")
    if journal.get("deviated"):
        reasons.append("the steady state deviated after the method: " + _failed_probe(after))
    for section, label in (("run", "method activity"), ("rollbacks", "rollback")):
        for run in journal.get(section) or []:
            name = (run.get("activity") or {}).get("name", "?")
            if run.get("status") is None:
                reasons.append(f"{label} {name} was interrupted")
            elif run.get("status") != "succeeded":
                reasons.append(f"{label} {name} failed: {_last_line(run.get('exception'))}")
    return not reasons, reasons


# ---- running ----------------------------------------------------------------------------------
def journal_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "chaos" / "journals"


def journal_path(state_dir: Path, name: str, now: float | None = None) -> Path:
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"
    base = journal_dir(state_dir) / f"{stamp.strftime('%Y%m%dT%H%M%SZ')}-{safe}"
    path, n = base.with_suffix(".json"), 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}.json")
    return path


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, enum.Enum):
            return o.value
        if isinstance(o, Exception):
            return f"{type(o).__name__}: {o}"
        try:
            return super().default(o)
        except TypeError:
            return str(o)


def write_journal(journal: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(journal, indent=2, cls=_Encoder) + "\n")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage().strip()
        if msg and msg not in self.messages:
            self.messages.append(msg)


def _sigterm_as_ctrl_c(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _signal_handler(say: Callable[[str], None]) -> Any:
    """SIGTERM aborts a run as Ctrl-C does; neither can cut the rollbacks short.

    chaoslib turns SIGTERM into an exception that a Python activity swallows as its own
    failure (the method then goes on); KeyboardInterrupt ends the run at once instead, and
    the rollback strategy ``always`` plays the rollbacks. While they run, SIGINT and
    SIGTERM are ignored so the cluster is not left broken (SIGKILL still ends the run).
    """
    from chaoslib.run import RunEventHandler

    def ignore(signum: int, _frame: Any) -> None:
        say(f"{signal.Signals(signum).name} ignored: the rollbacks are running")

    class Signals(RunEventHandler):
        saved: dict[int, Any] = {}

        def running(self, *args: Any) -> None:
            signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)

        def start_rollbacks(self, experiment: Any) -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, ignore)

        def rollbacks_completed(self, experiment: Any, journal: Any) -> None:
            for sig, handler in self.saved.items():
                signal.signal(sig, handler)
            self.saved.clear()

    return Signals()


def _event_handler(say: Callable[[str], None]) -> Any:
    from chaoslib.run import RunEventHandler

    class Progress(RunEventHandler):
        def started(self, experiment: Any, journal: Any) -> None:
            say(f"running {experiment.get('title')}")

        def start_hypothesis_before(self, experiment: Any) -> None:
            say("  steady state before the method")

        def start_method(self, experiment: Any) -> None:
            say("  method")

        def start_hypothesis_after(self, experiment: Any) -> None:
            say("  steady state after the method")

        def start_rollbacks(self, experiment: Any) -> None:
            say("  rollbacks")

        def start_activity(self, activity: Any) -> None:
            say(f"    {activity.get('type', 'activity')} {activity.get('name')}")

    return Progress()


def run(
    experiment: dict[str, Any],
    name: str,
    state_dir: Path,
    dry: bool = False,
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Run ``experiment`` against the cluster of ``state_dir``; write and judge its journal."""
    from chaoslib.experiment import run_experiment
    from chaoslib.types import Dry

    state_dir = Path(state_dir).absolute()
    validate(experiment)
    experiment = dict(experiment)
    if dry:
        experiment["dry"] = Dry.ACTIVITIES
    log = state_dir / "chaos" / "chaostoolkit.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log)
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(
        logging.Formatter("[%(asctime)s %(levelname)s] [%(module)s:%(lineno)d] %(message)s")
    )
    collect = _Collect()
    saved = []
    for lname in LOGGERS:
        lg = logging.getLogger(lname)
        saved.append((lg, lg.level, lg.propagate))
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
        lg.addHandler(file_handler)
        lg.addHandler(collect)
    path = journal_path(state_dir, name)
    handlers = [_event_handler(say)] if say else []
    if threading.current_thread() is threading.main_thread():
        handlers.append(_signal_handler(say or (lambda _msg: None)))
    saved_int = signal.getsignal(signal.SIGINT)
    try:
        journal = run_experiment(
            experiment,
            settings=SETTINGS,
            experiment_vars=({"state_dir": str(state_dir)}, None),
            event_handlers=handlers,
        )
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, saved_int)
        for lg, level, propagate in saved:
            lg.removeHandler(file_handler)
            lg.removeHandler(collect)
            lg.setLevel(level)
            lg.propagate = propagate
        file_handler.close()
    write_journal(journal, path)
    ok, reasons = verdict(journal)
    if not ok and journal.get("status") == "interrupted":
        reasons += [m for m in collect.messages if m not in reasons][:3]
    return RunResult(name, journal, path, ok, reasons, log, collect.messages)


# ---- summary ----------------------------------------------------------------------------------
def _run_line(run: dict[str, Any]) -> str:
    act = run.get("activity") or {}
    mark = "ok" if run.get("status") == "succeeded" else str(run.get("status") or "interrupted")
    if run.get("tolerance_met") is False:
        mark = "NOT MET"
    line = f"  {act.get('type', '?'):<7}{act.get('name', '?')}: {mark}"
    if run.get("duration") is not None:
        line += f" ({float(run['duration']):.1f}s)"
    if run.get("status") != "succeeded" and run.get("exception"):
        line += f"\n           {_last_line(run['exception'])}"
    elif run.get("tolerance_met") is False:
        line += f"\n           returned {run.get('output')!r}, expected {act.get('tolerance')!r}"
    return line


def summary(result: RunResult) -> list[str]:
    """A readable account of a run: steady states, method, rollbacks, verdict, journal."""
    j = result.journal
    exp = j.get("experiment") or {}
    lines = [f"experiment {result.name}: {exp.get('title', '')}"]
    if exp.get("dry"):
        lines.append("(dry run: no activity was executed)")
    states = j.get("steady_states") or {}
    sections = [
        ("steady state before the method", (states.get("before") or {}).get("probes")),
        ("method", j.get("run")),
        ("steady state after the method", (states.get("after") or {}).get("probes")),
        ("rollbacks", j.get("rollbacks")),
    ]
    for title, runs in sections:
        if runs is None:
            lines.append(f"{title}: not run")
            continue
        met = ""
        if title.startswith("steady"):
            key = "before" if "before" in title else "after"
            met = " met" if (states.get(key) or {}).get("steady_state_met") else " NOT met"
        lines.append(f"{title}:{met}" if runs or met else f"{title}: none")
        lines.extend(_run_line(r) for r in runs)
    status = j.get("status")
    if result.ok:
        lines.append(f"result: passed (status {status}, {float(j.get('duration') or 0):.1f}s)")
    else:
        lines.append(f"result: FAILED (status {status}{', deviated' if j.get('deviated') else ''})")
        lines.extend(f"  - {r}" for r in result.reasons)
    lines.append(f"journal: {result.path}")
    return lines
