"""The PromQL subset: what it parses, what it refuses, and Prometheus's evaluation rules."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from playground.monitor import promql
from playground.monitor.promql import NAME, Sample


def s(name: str, value: float, **labels: str) -> Sample:
    return Sample({NAME: name, **labels}, value)


SAMPLES = [
    s("up", 1, job="marathon", instance="marathon-1"),
    s("up", 0, job="mesos-master", instance="master-1"),
    s("up", 1, job="mesos-master", instance="master-2"),
    s("marathon_app_instances", 3, app="/web"),
    s("marathon_app_instances", 2, app="/db"),
    s("marathon_app_tasks_running", 1, app="/web"),
    s("marathon_app_tasks_running", 2, app="/db"),
    s("mesos_agent_unreachable", 1, agent="agent-2", zone="b"),
    s("mesos_agent_unreachable", 0, agent="agent-1", zone="a"),
    s("agent_zone", 1, agent="agent-2", zone="b", rack="r1"),
    s("agent_zone", 1, agent="agent-1", zone="a", rack="r1"),
]


def q(text: str, samples: list[Sample] | None = None) -> promql.Value:
    return promql.query(text, promql.Context(SAMPLES if samples is None else samples))


def labelsets(v: promql.Value) -> list[dict[str, str]]:
    assert isinstance(v, list)
    return sorted((dict(x.labels) for x in v), key=lambda d: sorted(d.items()))  # type: ignore[union-attr]


def values(v: promql.Value) -> dict[tuple[tuple[str, str], ...], float]:
    assert isinstance(v, list)
    return {promql.key_of(x.labels): x.value for x in v}  # type: ignore[union-attr]


def test_selectors_and_matchers() -> None:
    """Equality, inequality and fully anchored regex matchers select as in Prometheus."""
    assert len(q('up{job="mesos-master"}')) == 2  # type: ignore[arg-type]
    assert len(q('up{job!="mesos-master"}')) == 1  # type: ignore[arg-type]
    assert len(q('up{instance=~"master-.*"}')) == 2  # type: ignore[arg-type]
    assert len(q('up{instance=~"master"}')) == 0  # type: ignore[arg-type]  # anchored
    assert len(q('up{instance!~"master-1|marathon-1"}')) == 1  # type: ignore[arg-type]
    assert len(q('{__name__="up"}')) == 3  # type: ignore[arg-type]
    assert q('up{job="nope"}') == []


def test_comparison_filters_keep_name_and_value() -> None:
    """vector == scalar filters and keeps the metric name; bool gives 0/1 and drops it."""
    out = q("up == 0")
    assert labelsets(out) == [{NAME: "up", "job": "mesos-master", "instance": "master-1"}]
    assert [x.value for x in out] == [0.0]  # type: ignore[union-attr]
    out = q('up{job="mesos-master"} == bool 0')
    assert sorted(x.value for x in out) == [0.0, 1.0]  # type: ignore[union-attr]
    assert all(NAME not in x.labels for x in out)  # type: ignore[union-attr]
    # scalar on the left: the vector's value is kept
    assert [x.value for x in q("2 < marathon_app_instances")] == [3.0]  # type: ignore[union-attr]


def test_vector_vector_one_to_one() -> None:
    """Comparisons match on all labels but the name; the left side's labels and value remain."""
    out = q("marathon_app_tasks_running < marathon_app_instances")
    assert labelsets(out) == [{NAME: "marathon_app_tasks_running", "app": "/web"}]
    assert [x.value for x in out] == [1.0]  # type: ignore[union-attr]
    diff = values(q("marathon_app_instances - marathon_app_tasks_running"))
    assert diff == {(("app", "/db"),): 0.0, (("app", "/web"),): 2.0}


def test_on_and_ignoring() -> None:
    """on() keeps only the matching labels; ignoring() drops the ignored ones."""
    out = q("mesos_agent_unreachable * on(agent) agent_zone")
    assert labelsets(out) == [{"agent": "agent-1"}, {"agent": "agent-2"}]
    out = q("mesos_agent_unreachable * ignoring(rack) agent_zone")
    assert labelsets(out) == [{"agent": "agent-1", "zone": "a"}, {"agent": "agent-2", "zone": "b"}]
    with pytest.raises(promql.PromQLError, match=r"many-to-many|duplicate"):
        q("mesos_agent_unreachable * on(rack) agent_zone")


def test_group_left() -> None:
    """group_left keeps the many side's labels and copies the listed ones from the one side."""
    samples = [
        s("a", 1, app="/x", task="1"),
        s("a", 2, app="/x", task="2"),
        s("b", 10, app="/x", owner="me"),
    ]
    out = q("a * on(app) group_left(owner) b", samples)
    assert labelsets(out) == [
        {"app": "/x", "task": "1", "owner": "me"},
        {"app": "/x", "task": "2", "owner": "me"},
    ]
    assert sorted(x.value for x in out) == [10.0, 20.0]  # type: ignore[union-attr]
    with pytest.raises(promql.PromQLError, match="group_left"):
        q("a * on(app) b", samples)


def test_set_operators() -> None:
    """and/unless/or work on label signatures, with on() as well."""
    assert labelsets(q("up == 0 and on(instance) up")) == [
        {NAME: "up", "job": "mesos-master", "instance": "master-1"}
    ]
    assert len(q('up unless up{job="marathon"}')) == 2  # type: ignore[arg-type]
    both = q('up{job="marathon"} or up{job="mesos-master"}')
    assert len(both) == 3  # type: ignore[arg-type]
    assert len(q('up{job="marathon"} or up{job="marathon"}')) == 1  # type: ignore[arg-type]


def test_aggregations() -> None:
    """sum/min/max/avg/count/group with by and without, before or after the argument."""
    assert values(q("sum(up)")) == {(): 2.0}
    assert values(q("sum by (job) (up)")) == {
        (("job", "marathon"),): 1.0,
        (("job", "mesos-master"),): 1.0,
    }
    assert values(q("count(up) by (job)")) == {
        (("job", "marathon"),): 1.0,
        (("job", "mesos-master"),): 2.0,
    }
    assert values(q('max without (instance) (up{job="mesos-master"})')) == {
        (("job", "mesos-master"),): 1.0
    }
    assert values(q("min(up)")) == {(): 0.0}
    assert values(q("avg(marathon_app_instances)")) == {(): 2.5}
    assert values(q("group(up)")) == {(): 1.0}
    assert q("sum(nothing)") == []


def test_precedence_and_arithmetic() -> None:
    """Prometheus precedence: ^ over unary minus over * over + over comparisons over and over or."""
    assert q("1 + 2 * 3 == bool 7") == 1.0
    assert q("-2 ^ 2") == -4.0
    assert q("2 ^ 3 ^ 2") == 512.0
    assert q("(1 + 2) * 3") == 9.0
    assert q("7 % 4") == 3.0
    assert math.isinf(q("1 / 0"))  # type: ignore[arg-type]
    assert values(q("-marathon_app_instances")) == {
        (("app", "/db"),): -2.0,
        (("app", "/web"),): -3.0,
    }


def test_functions() -> None:
    """absent, vector, scalar, time, clamp and abs."""
    assert labelsets(q('absent(nope{job="x", a=~"b"})')) == [{"job": "x"}]
    assert q('absent(up{job="marathon"})') == []
    assert values(q("vector(1)")) == {(): 1.0}
    assert q('scalar(up{job="marathon"})') == 1.0
    assert math.isnan(q("scalar(up)"))  # type: ignore[arg-type]
    assert promql.query("time()", promql.Context([], now=42.0)) == 42.0
    assert values(q("clamp_max(marathon_app_instances, 2)")) == {
        (("app", "/db"),): 2.0,
        (("app", "/web"),): 2.0,
    }
    assert values(q("abs(-marathon_app_instances)"))[(("app", "/db"),)] == 2.0


def test_range_functions_read_history_in_wall_time() -> None:
    """increase/rate/changes/*_over_time read the window, converted by the time scale; resets count."""
    series = promql.Series(
        {NAME: "f_total", "app": "/x"}, [(1.0, 0.0), (2.0, 2.0), (3.0, 1.0), (4.0, 4.0)]
    )
    asked: list[float] = []

    def history(sel: promql.VectorSelector, window: float) -> list[promql.Series]:
        asked.append(window)
        return [series] if sel.matches(series.labels) else []

    ctx = promql.Context([], history=history, now=4.0, to_wall=lambda sec: sec / 10)
    assert values(promql.query("increase(f_total[5m])", ctx)) == {(("app", "/x"),): 6.0}
    assert asked == [30.0]  # 5m at time scale 10
    assert values(promql.query("rate(f_total[1m])", ctx)) == {(("app", "/x"),): 0.1}
    assert values(promql.query("changes(f_total[1m])", ctx)) == {(("app", "/x"),): 3.0}
    assert values(promql.query("max_over_time(f_total[1m])", ctx)) == {(("app", "/x"),): 4.0}
    assert values(promql.query("delta(f_total[1m])", ctx)) == {(("app", "/x"),): 4.0}
    assert promql.query("increase(nope[1m])", ctx) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty expression"),
        ("up ==", "unexpected the end"),
        ("up{job=marathon}", "expected a quoted label value"),
        ("{}", "at least one non-empty matcher"),
        ('{job=~".*"}', "at least one non-empty matcher"),
        ("1 > 2", "must use BOOL modifier"),
        ("1 and 2", "set operator"),
        ("up[5m] > 1", "instant vector"),
        ("rate(up)", "expected type range vector"),
        ("sum(up[5m])", "expected instant vector"),
        ("topk(3, up)", "not supported"),
        ("histogram_quantile(0.9, up)", "not supported"),
        ("up offset 5m", "offset"),
        ("up[5m:1m]", "expected a duration|subqueries"),
        ('up{job=~"("}', "invalid regular expression"),
        ("up[5x]", "duration"),
        ("up and bool up", "bool modifier"),
        ("sum by (job) (up) by (job)", "twice"),
        ("clamp_min(up)", "expected 2 argument"),
    ],
)
def test_parse_errors_say_what_and_where(text: str, message: str) -> None:
    """Expressions outside the subset (or not PromQL at all) fail with a clear message."""
    with pytest.raises(promql.PromQLError, match=message):
        promql.parse(text)


def test_durations() -> None:
    """Prometheus durations, and back."""
    assert promql.parse_duration("90s") == 90
    assert promql.parse_duration("1h30m") == 5400
    assert promql.parse_duration("250ms") == 0.25
    assert promql.format_duration(90) == "1m30s"
    assert promql.format_duration(0) == "0s"
    for bad in ("", "5", "m", "1.5m", "5 m"):
        with pytest.raises(promql.PromQLError):
            promql.parse_duration(bad)


VALID = [
    'up{job="marathon"} == 0',
    "marathon_app_tasks_running < marathon_app_instances",
    "mesos_agent_unreachable * on(agent) group_left(zone) agent_zone > 0",
    "up == 0 and on(instance) up unless ignoring(job) up or vector(1)",
    "sum by (job) (up) / count without (instance) (up) >= bool 0.5",
    "increase(marathon_app_task_failures_total[5m]) >= 3",
    'absent(up{job="coordinator"})',
    "-2 ^ 2 + clamp_min(abs(x), 1) % 3",
    'max_over_time(x[1h30m]) - min_over_time(x{a!~"b"}[90s]) > scalar(vector(time()))',
]


@pytest.mark.parametrize("text", VALID)
def test_the_subset_parses(text: str) -> None:
    """Each expression of the corpus parses (the next test shows Prometheus accepts them too)."""
    promql.parse(text)


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)"
)
def test_the_subset_is_real_promql(tmp_path: Path) -> None:
    """promtool (Prometheus's own parser) accepts every expression of the corpus."""
    doc = {
        "groups": [
            {
                "name": "corpus",
                "rules": [{"alert": f"A{i}", "expr": e} for i, e in enumerate(VALID)],
            }
        ]
    }
    f = tmp_path / "corpus.yml"
    f.write_text(yaml.safe_dump(doc))
    cp = subprocess.run(
        ["promtool", "check", "rules", str(f)], capture_output=True, text=True, check=False
    )
    assert cp.returncode == 0, cp.stdout + cp.stderr
