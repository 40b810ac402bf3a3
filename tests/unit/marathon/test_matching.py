"""Offer matching as Marathon 1.10 does it (playground.marathon.matching)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from playground.marathon.matching import (
    REASON_FUNNEL,
    Match,
    NoMatch,
    Placement,
    attribute_value_string,
    constraints_met,
    format_scalar,
    match_offer,
    primary_reason,
    select_kills,
)

REGION = "eu"


def res_scalar(name: str, value: float, role: str = "*", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": role}
    if role != "*":
        d["reservations"] = [{"type": "STATIC", "role": role}]
    d["allocation_info"] = {"role": "slave_public" if role == "*" else role}
    d.update(extra)
    return d


def res_ports(ranges: list[tuple[int, int]], role: str = "*") -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "ports",
        "type": "RANGES",
        "ranges": {"range": [{"begin": b, "end": e} for b, e in ranges]},
        "role": role,
    }
    if role != "*":
        d["reservations"] = [{"type": "STATIC", "role": role}]
    d["allocation_info"] = {"role": "slave_public" if role == "*" else role}
    return d


def text_attr(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "type": "TEXT", "text": {"value": value}}


def make_offer(
    *,
    oid: str = "O1",
    agent: str = "S1",
    host: str = "agent-1",
    cpus: float = 4,
    mem: float = 4096,
    disk: float = 10000,
    gpus: float = 0,
    ports: list[tuple[int, int]] | None = None,
    role: str = "*",
    attributes: list[dict[str, Any]] | None = None,
    region: str | None = REGION,
    zone: str | None = "a",
    resources: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if resources is None:
        resources = [res_scalar("cpus", cpus, role), res_scalar("mem", mem, role)]
        if disk:
            resources.append(res_scalar("disk", disk, role))
        if gpus:
            resources.append(res_scalar("gpus", gpus, role))
        resources.append(res_ports(ports if ports is not None else [(31000, 32000)], role))
    offer: dict[str, Any] = {
        "id": {"value": oid},
        "framework_id": {"value": "F"},
        "agent_id": {"value": agent},
        "hostname": host,
        "resources": resources,
        "attributes": attributes or [],
        "allocation_info": {"role": "slave_public"},
    }
    if region is not None:
        offer["domain"] = {"fault_domain": {"region": {"name": region}, "zone": {"name": zone}}}
    offer.update(extra)
    return offer


def make_app(**kw: Any) -> dict[str, Any]:
    app: dict[str, Any] = {
        "id": "/app",
        "cpus": 1.0,
        "mem": 128.0,
        "disk": 0.0,
        "gpus": 0,
        "instances": 1,
        "constraints": [],
        "portDefinitions": [],
        "requirePorts": False,
        "labels": {},
    }
    app.update(kw)
    return app


def place(host: str, agent: str | None = None, **attrs: str) -> Placement:
    return Placement(agent or host, host, REGION, "a", dict(attrs))


def match(
    app: dict[str, Any], offer: dict[str, Any], placed: list[Placement] | None = None, **kw: Any
):
    kw.setdefault("default_region", REGION)
    kw.setdefault("rng", random.Random(7))
    return match_offer(app, offer, placed or [], **kw)


def ok(result: Match | NoMatch) -> Match:
    assert isinstance(result, Match), result
    return result


def reasons(result: Match | NoMatch) -> list[str]:
    assert isinstance(result, NoMatch), result
    return result.reasons


def offered(o: dict[str, Any]) -> Placement:
    return Placement.from_offer(o)


# -- attribute strings and placements -----------------------------------------------------------


class TestAttributeValues:
    def test_scalar_formatting_half_even_thousandths(self):
        assert format_scalar(0.8) == "0.8"
        assert format_scalar(0.8001) == "0.8"
        assert format_scalar(2.0) == "2"
        assert format_scalar(1.0005) == "1"  # half-even on the exact decimal
        assert format_scalar(1.0015) == "1.002"
        assert format_scalar(0.0004) == "0"
        assert format_scalar(1234.5) == "1234.5"

    def test_kinds(self):
        assert attribute_value_string(text_attr("rack", "r1")) == "r1"
        assert (
            attribute_value_string({"name": "w", "type": "SCALAR", "scalar": {"value": 2.5}})
            == "2.5"
        )
        rng = {
            "name": "r",
            "type": "RANGES",
            "ranges": {"range": [{"begin": 5, "end": 6}, {"begin": 1, "end": 3}]},
        }
        assert attribute_value_string(rng) == "[1-3,5-6]"
        st = {"name": "s", "type": "SET", "set": {"item": ["b", "a"]}}
        assert attribute_value_string(st) == "{a,b}"

    def test_placement_from_offer(self):
        o = make_offer(
            attributes=[
                text_attr("rack", "r1"),
                {"name": "level", "type": "SCALAR", "scalar": {"value": 0.80}},
                text_attr("rack", "ignored-duplicate"),
            ],
            zone="b",
        )
        p = Placement.from_offer(o)
        assert p == Placement("S1", "agent-1", "eu", "b", {"rack": "r1", "level": "0.8"})
        assert hash(p) == hash(Placement("S1", "agent-1", "eu", "b", {}))

    def test_placement_without_domain(self):
        p = Placement.from_offer(make_offer(region=None))
        assert p.region is None and p.zone is None


# -- constraints ----------------------------------------------------------------------------------


def met(constraints: list[list[Any]], offer: Placement, placed: list[Placement], **kw: Any) -> bool:
    kw.setdefault("default_region", REGION)
    return constraints_met(make_app(constraints=constraints), offer, placed, **kw)


class TestUnique:
    def test_hostname(self):
        c = [["hostname", "UNIQUE"]]
        assert met(c, place("h1"), [])
        assert met(c, place("h1"), [place("h2")])
        assert not met(c, place("h1"), [place("h1")])

    def test_at_hostname_alias(self):
        assert not met([["@hostname", "UNIQUE"]], place("h1"), [place("h1")])

    def test_attribute(self):
        c = [["rack", "UNIQUE"]]
        assert met(c, place("h1", rack="r1"), [place("h2", rack="r2")])
        assert not met(c, place("h1", rack="r1"), [place("h2", rack="r1")])
        # placed instances without the attribute never collide
        assert met(c, place("h1", rack="r1"), [place("h2")])

    def test_missing_attribute_on_offer_refused(self):
        assert not met([["rack", "UNIQUE"]], place("h1"), [])


class TestCluster:
    def test_with_value(self):
        c = [["rack", "CLUSTER", "r1"]]
        assert met(c, place("h1", rack="r1"), [])
        assert not met(c, place("h1", rack="r2"), [])

    def test_without_value_first_placement_decides(self):
        c = [["rack", "CLUSTER"]]
        assert met(c, place("h1", rack="r2"), [])
        assert met(c, place("h1", rack="r2"), [place("h9", rack="r2")])
        assert not met(c, place("h1", rack="r1"), [place("h9", rack="r2")])

    def test_hostname(self):
        assert met([["hostname", "CLUSTER", "h1"]], place("h1"), [])
        assert not met([["hostname", "CLUSTER", "h1"]], place("h2"), [])
        assert met([["hostname", "CLUSTER"]], place("h1"), [place("h1")])
        assert not met([["hostname", "CLUSTER"]], place("h2"), [place("h1")])

    def test_empty_string_value_is_no_value(self):
        assert met([["rack", "CLUSTER", ""]], place("h1", rack="x"), [])


class TestGroupBy:
    def test_new_value_always_welcome(self):
        c = [["rack", "GROUP_BY"]]
        assert met(c, place("h1", rack="r3"), [place("a", rack="r1"), place("b", rack="r1")])

    def test_only_smallest_group(self):
        c = [["rack", "GROUP_BY"]]
        placed = [place("a", rack="r1"), place("b", rack="r1"), place("c", rack="r2")]
        assert met(c, place("h", rack="r2"), placed)
        assert not met(c, place("h", rack="r1"), placed)

    def test_even_groups_all_fine(self):
        c = [["rack", "GROUP_BY"]]
        placed = [place("a", rack="r1"), place("c", rack="r2")]
        assert met(c, place("h", rack="r1"), placed)
        assert met(c, place("h", rack="r2"), placed)

    def test_minimum_groups_wait_for_unseen_value(self):
        c = [["rack", "GROUP_BY", "3"]]
        placed = [place("a", rack="r1"), place("c", rack="r2")]
        # only two racks known: existing racks are refused until a third appears
        assert not met(c, place("h", rack="r1"), placed)
        assert met(c, place("h", rack="r3"), placed)
        placed.append(place("d", rack="r3"))
        assert met(c, place("h", rack="r1"), placed)

    def test_non_numeric_value_means_no_minimum(self):
        placed = [place("a", rack="r1"), place("c", rack="r2")]
        assert met([["rack", "GROUP_BY", "x"]], place("h", rack="r1"), placed)

    def test_zone_group_by(self):
        c = [["@zone", "GROUP_BY", "2"]]
        a = Placement("S1", "h1", REGION, "a", {})
        b = Placement("S2", "h2", REGION, "b", {})
        assert met(c, a, [])
        assert not met(c, a, [a])  # wait for a second zone
        assert met(c, b, [a])

    def test_placed_without_attribute_form_a_group(self):
        c = [["rack", "GROUP_BY", "2"]]
        placed = [place("a"), place("b", rack="r1")]
        assert met(c, place("h", rack="r1"), placed)


class TestMaxPer:
    def test_limit(self):
        c = [["rack", "MAX_PER", "2"]]
        assert met(c, place("h", rack="r1"), [place("a", rack="r1")])
        assert not met(c, place("h", rack="r1"), [place("a", rack="r1"), place("b", rack="r1")])
        assert met(c, place("h", rack="r2"), [place("a", rack="r1"), place("b", rack="r1")])

    def test_hostname(self):
        c = [["hostname", "MAX_PER", "1"]]
        assert not met(c, place("h"), [place("h")])
        assert met(c, place("h2"), [place("h")])

    def test_invalid_value_refuses(self):
        assert not met([["rack", "MAX_PER", "two"]], place("h", rack="r1"), [])


class TestLikeUnlike:
    def test_like_full_match(self):
        assert met([["rack", "LIKE", "rack-[1-3]"]], place("h", rack="rack-2"), [])
        assert not met([["rack", "LIKE", "rack-[1-3]"]], place("h", rack="rack-22"), [])
        assert not met(
            [["rack", "LIKE", "rack"]], place("h", rack="rack-2"), []
        )  # no partial match

    def test_like_any(self):
        assert met([["rack", "LIKE", ".*"]], place("h", rack="whatever"), [])

    def test_like_requires_attribute_and_value(self):
        assert not met([["rack", "LIKE", ".*"]], place("h"), [])
        assert not met([["rack", "LIKE", ""]], place("h", rack="x"), [])
        assert not met([["rack", "LIKE"]], place("h", rack="x"), [])

    def test_unlike(self):
        assert met([["rack", "UNLIKE", "rack-[7-9]"]], place("h", rack="rack-1"), [])
        assert not met([["rack", "UNLIKE", "rack-[7-9]"]], place("h", rack="rack-8"), [])

    def test_unlike_missing_attribute_always_matches(self):
        assert met([["rack", "UNLIKE", ".*"]], place("h"), [])

    def test_hostname_like(self):
        assert met([["hostname", "LIKE", "agent-[0-9]+"]], place("agent-12"), [])
        assert not met([["hostname", "UNLIKE", "agent-.*"]], place("agent-12"), [])

    def test_invalid_regex_refuses(self):
        assert not met([["rack", "LIKE", "("]], place("h", rack="x"), [])

    def test_scalar_attribute_like_uses_formatted_value(self):
        p = offered(
            make_offer(attributes=[{"name": "level", "type": "SCALAR", "scalar": {"value": 2.0}}])
        )
        assert met([["level", "LIKE", "2"]], p, [])
        assert not met([["level", "LIKE", "2\\.0"]], p, [])


class TestIs:
    def test_text(self):
        assert met([["rack", "IS", "rack-1"]], place("h", rack="rack-1"), [])
        assert not met([["rack", "IS", "rack-1"]], place("h", rack="rack-10"), [])

    @pytest.mark.parametrize("value", ["0.8", "0.80", "0.8001"])
    def test_scalar_nearest_thousandth(self, value: str):
        p = offered(
            make_offer(attributes=[{"name": "level", "type": "SCALAR", "scalar": {"value": 0.8}}])
        )
        assert met([["level", "IS", value]], p, [])

    def test_scalar_differs(self):
        p = offered(
            make_offer(attributes=[{"name": "level", "type": "SCALAR", "scalar": {"value": 0.8}}])
        )
        assert not met([["level", "IS", "0.81"]], p, [])

    def test_missing(self):
        assert not met([["rack", "IS", "x"]], place("h"), [])

    def test_hostname_and_zone(self):
        assert met([["@hostname", "IS", "h"]], place("h"), [])
        assert met([["@zone", "IS", "a"]], place("h"), [])
        assert not met([["@zone", "IS", "b"]], place("h"), [])


class TestRegions:
    def test_no_region_constraint_only_local_region(self):
        remote = Placement("S", "h", "us", "x", {})
        assert not met([], remote, [])
        assert met([], Placement("S", "h", REGION, "x", {}), [])

    def test_offer_without_domain_counts_as_local(self):
        assert met([], Placement("S", "h", None, None, {}), [])

    def test_region_constraint_allows_remote(self):
        remote = Placement("S", "h", "us", "x", {})
        assert met([["@region", "IS", "us"]], remote, [])
        assert met([["@region", "LIKE", "u.*"]], remote, [])
        assert not met([["@region", "IS", "us"]], Placement("S", "h", REGION, "x", {}), [])

    def test_region_group_by_spreads_over_regions(self):
        c = [["@region", "GROUP_BY", "2"]]
        home = Placement("S1", "h1", REGION, "a", {})
        remote = Placement("S2", "h2", "us", "x", {})
        assert met(c, remote, [home])
        assert not met(c, home, [home])

    def test_without_default_region_everything_goes(self):
        assert met([], Placement("S", "h", "us", "x", {}), [], default_region=None)

    def test_region_constraint_on_offer_without_domain(self):
        # Marathon reads no region from such an offer: only UNLIKE can match
        p = Placement("S", "h", None, None, {})
        assert not met([["@region", "IS", REGION]], p, [])
        assert met([["@region", "UNLIKE", "us"]], p, [])

    def test_unique_hostname_honoured_in_remote_regions(self):
        c = [["@region", "IS", "us"], ["hostname", "UNIQUE"]]
        r1 = Placement("S", "h", "us", "x", {})
        assert not met(c, r1, [r1])


def test_several_constraints_all_must_hold():
    c = [["rack", "LIKE", "r.*"], ["hostname", "UNIQUE"]]
    assert met(c, place("h1", rack="r1"), [place("h2", rack="r1")])
    assert not met(c, place("h1", rack="r1"), [place("h1", rack="r1")])
    assert not met(c, place("h3", rack="x1"), [])


def test_unknown_operator_refuses():
    assert not met([["rack", "IN", "a,b"]], place("h", rack="a"), [])


# -- resources and roles --------------------------------------------------------------------------


class TestResources:
    def test_simple_match(self):
        m = ok(match(make_app(cpus=1.5, mem=256, disk=100), make_offer()))
        by_name = {r["name"]: r for r in m.resources}
        assert by_name["cpus"]["scalar"]["value"] == 1.5
        assert by_name["mem"]["scalar"]["value"] == 256
        assert by_name["disk"]["scalar"]["value"] == 100
        assert by_name["cpus"]["allocation_info"] == {"role": "slave_public"}
        assert by_name["cpus"]["role"] == "*"
        assert m.host_ports == []
        assert m.placement.agent_id == "S1"

    def test_zero_requirements_consume_nothing(self):
        m = ok(match(make_app(disk=0, gpus=0), make_offer()))
        assert {r["name"] for r in m.resources} == {"cpus", "mem"}

    def test_insufficient_each(self):
        app = make_app(cpus=8, mem=8192, disk=20000)
        assert reasons(match(app, make_offer())) == [
            "InsufficientCpus",
            "InsufficientMemory",
            "InsufficientDisk",
        ]

    def test_gpus_reason_order(self):
        # Marathon matches cpus, mem, gpus, then disk
        app = make_app(cpus=8, gpus=1, disk=20000)
        assert reasons(match(app, make_offer())) == [
            "InsufficientCpus",
            "InsufficientGpus",
            "InsufficientDisk",
        ]

    def test_gpu_match(self):
        m = ok(match(make_app(gpus=1), make_offer(gpus=2)))
        assert [r["scalar"]["value"] for r in m.resources if r["name"] == "gpus"] == [1]

    def test_scalars_split_across_roles(self):
        offer = make_offer(
            resources=[
                res_scalar("cpus", 1, "slave_public"),
                res_scalar("cpus", 1),
                res_scalar("mem", 512),
            ]
        )
        app = make_app(cpus=1.5, acceptedResourceRoles=["slave_public", "*"])
        m = ok(match(app, offer))
        cpus = [(r["role"], r["scalar"]["value"]) for r in m.resources if r["name"] == "cpus"]
        assert cpus == [("slave_public", 1), ("*", 0.5)]
        left = [
            (r["role"], r["scalar"]["value"])
            for r in m.remaining["resources"]
            if r["name"] == "cpus"
        ]
        assert left == [("*", 0.5)]

    def test_disk_with_volume_or_source_not_used_for_scratch(self):
        offer = make_offer(
            resources=[
                res_scalar("cpus", 4),
                res_scalar("mem", 4096),
                res_scalar(
                    "disk", 1000, disk={"source": {"type": "MOUNT", "mount": {"root": "/mnt"}}}
                ),
                res_scalar(
                    "disk", 1000, disk={"persistence": {"id": "v1"}, "volume": {"mode": "RW"}}
                ),
            ]
        )
        assert reasons(match(make_app(disk=10), offer)) == ["InsufficientDisk"]

    def test_resident_reservation_labels_excluded(self):
        labelled = res_scalar("cpus", 4, "slave_public")
        labelled["reservations"][0]["labels"] = {
            "labels": [{"key": "marathon_task_id", "value": "x"}]
        }
        offer = make_offer(resources=[labelled, res_scalar("mem", 1024, "slave_public")])
        app = make_app(acceptedResourceRoles=["slave_public"])
        assert reasons(match(app, offer)) == ["InsufficientCpus"]


class TestRoles:
    def test_reserved_resources_need_accepting_app(self):
        offer = make_offer(role="slave_public")
        assert reasons(match(make_app(), offer)) == [
            "InsufficientCpus",
            "InsufficientMemory",
            "UnfulfilledRole",
        ]
        m = ok(match(make_app(acceptedResourceRoles=["slave_public"]), offer))
        cpus = next(r for r in m.resources if r["name"] == "cpus")
        assert cpus["role"] == "slave_public"
        assert cpus["reservations"] == [{"type": "STATIC", "role": "slave_public"}]
        assert cpus["allocation_info"] == {"role": "slave_public"}

    def test_only_reserved_app_refuses_unreserved(self):
        app = make_app(acceptedResourceRoles=["slave_public"])
        assert "UnfulfilledRole" in reasons(match(app, make_offer()))

    def test_empty_accepted_roles_means_unreserved(self):
        ok(match(make_app(acceptedResourceRoles=[]), make_offer()))

    def test_role_from_reservations_without_role_field(self):
        r = res_scalar("cpus", 4, "slave_public")
        del r["role"]
        offer = make_offer(resources=[r, res_scalar("mem", 1024, "slave_public")])
        ok(match(make_app(acceptedResourceRoles=["slave_public"]), offer))

    def test_role_alone_does_not_block_a_match(self):
        # As in Marathon: UnfulfilledRole is only reported, an app needing nothing still fits.
        app = make_app(cpus=0, mem=0)
        m = ok(match(app, make_offer(role="slave_public")))
        assert m.resources == []


class TestReasons:
    def test_all_checks_are_evaluated(self):
        app = make_app(cpus=8, constraints=[["rack", "IS", "r9"]])
        assert reasons(match(app, make_offer())) == ["InsufficientCpus", "UnfulfilledConstraint"]

    def test_region_refusal_is_unfulfilled_constraint(self):
        assert reasons(match(make_app(), make_offer(region="us"))) == ["UnfulfilledConstraint"]

    def test_ports_only_checked_when_everything_else_fits(self):
        app = make_app(cpus=8, portDefinitions=[{"port": 80}], requirePorts=True)
        assert reasons(match(app, make_offer())) == ["InsufficientCpus"]
        app = make_app(portDefinitions=[{"port": 80}], requirePorts=True)
        assert reasons(match(app, make_offer())) == ["InsufficientPorts"]

    def test_primary_reason_by_funnel(self):
        assert (
            primary_reason(["InsufficientCpus", "UnfulfilledConstraint"]) == "UnfulfilledConstraint"
        )
        assert primary_reason(["InsufficientPorts"]) == "InsufficientPorts"
        assert primary_reason([]) is None
        assert (
            NoMatch(["InsufficientMemory", "UnfulfilledRole"]).primary_reason == "UnfulfilledRole"
        )
        assert REASON_FUNNEL[:4] == (
            "UnfulfilledRole",
            "UnfulfilledConstraint",
            "NoCorrespondingReservationFound",
            "AgentMaintenance",
        )

    def test_gpu_offers_declined_for_non_gpu_apps(self):
        offer = make_offer(gpus=1)
        assert reasons(match(make_app(), offer)) == ["DeclinedScarceResources"]
        ok(match(make_app(labels={"GPU_SCHEDULING_BEHAVIOR": "unrestricted"}), offer))
        ok(match(make_app(), offer, gpu_scheduling_behavior="unrestricted"))
        ok(match(make_app(gpus=1), offer))

    def test_agent_maintenance(self):
        now = 1_000_000.0
        window = {
            "start": {"nanoseconds": int((now - 10) * 1e9)},
            "duration": {"nanoseconds": int(60 * 1e9)},
        }
        offer = make_offer(unavailability=window)
        assert reasons(match(make_app(), offer, now=now)) == ["AgentMaintenance"]
        ok(match(make_app(), offer, now=now, maintenance_mode=False))
        ok(match(make_app(), offer, now=now + 120))  # window over

    def test_agent_maintenance_draining(self):
        now = 1_000_000.0
        offer = make_offer(unavailability={"start": {"nanoseconds": int((now + 30) * 1e9)}})
        ok(match(make_app(), offer, now=now))
        assert reasons(match(make_app(), offer, now=now, draining_seconds=60)) == [
            "AgentMaintenance"
        ]


# -- ports ----------------------------------------------------------------------------------------


def ports_of(m: Match) -> list[tuple[int, int]]:
    return [
        (r["begin"], r["end"])
        for res in m.resources
        if res["name"] == "ports"
        for r in res["ranges"]["range"]
    ]


class TestPorts:
    def test_random_ports_without_require_ports(self):
        app = make_app(portDefinitions=[{"port": 10000, "protocol": "tcp"}, {"port": 10001}])
        m = ok(match(app, make_offer(ports=[(31000, 31099)])))
        assert len(m.host_ports) == 2
        assert all(31000 <= p <= 31099 for p in m.host_ports)
        assert len(set(m.host_ports)) == 2
        assert sorted(p for b, e in ports_of(m) for p in range(b, e + 1)) == sorted(m.host_ports)

    def test_random_choice_is_deterministic_with_rng(self):
        app = make_app(portDefinitions=[{"port": 0}])
        a = ok(match(app, make_offer(), rng=random.Random(1))).host_ports
        b = ok(match(app, make_offer(), rng=random.Random(1))).host_ports
        assert a == b

    def test_random_ports_are_consecutive(self):
        app = make_app(portDefinitions=[{"port": 0}] * 3)
        m = ok(match(app, make_offer(ports=[(31000, 31010)])))
        # starting at a random port, ports follow each other (wrapping to the range start)
        hp = m.host_ports
        assert all(b == a + 1 or (a == 31010 and b == 31000) for a, b in itertools.pairwise(hp))

    def test_require_ports(self):
        app = make_app(portDefinitions=[{"port": 31005}, {"port": 31007}], requirePorts=True)
        m = ok(match(app, make_offer()))
        assert m.host_ports == [31005, 31007]
        assert ports_of(m) == [(31005, 31005), (31007, 31007)]

    def test_require_ports_consecutive_merge_into_one_range(self):
        app = make_app(portDefinitions=[{"port": 31005}, {"port": 31006}], requirePorts=True)
        assert ports_of(ok(match(app, make_offer()))) == [(31005, 31006)]

    def test_require_ports_missing(self):
        app = make_app(portDefinitions=[{"port": 80}], requirePorts=True)
        assert reasons(match(app, make_offer())) == ["InsufficientPorts"]

    def test_require_ports_zero_is_dynamic(self):
        app = make_app(portDefinitions=[{"port": 31000}, {"port": 0}], requirePorts=True)
        m = ok(match(app, make_offer(ports=[(31000, 31001)])))
        assert m.host_ports == [31000, 31001]

    def test_not_enough_ports(self):
        app = make_app(portDefinitions=[{"port": 0}] * 3)
        assert reasons(match(app, make_offer(ports=[(31000, 31001)]))) == ["InsufficientPorts"]

    def test_no_ports_resource(self):
        offer = make_offer(resources=[res_scalar("cpus", 4), res_scalar("mem", 4096)])
        ok(match(make_app(), offer))
        assert reasons(match(make_app(portDefinitions=[{"port": 0}]), offer)) == [
            "InsufficientPorts"
        ]

    def test_port_mappings_static_and_dynamic(self):
        app = make_app(
            container={
                "type": "DOCKER",
                "docker": {"image": "nginx"},
                "portMappings": [
                    {"containerPort": 80, "hostPort": 0, "protocol": "tcp"},
                    {"containerPort": 443, "hostPort": 31001, "protocol": "tcp"},
                ],
            },
            networks=[{"mode": "container/bridge"}],
            portDefinitions=[],
        )
        m = ok(match(app, make_offer(ports=[(31000, 31002)])))
        assert m.host_ports[1] == 31001
        assert m.host_ports[0] in (31000, 31002)  # the static port is never drawn again

    def test_port_mapping_static_ignores_require_ports(self):
        app = make_app(
            container={"type": "DOCKER", "portMappings": [{"containerPort": 80, "hostPort": 8080}]},
            requirePorts=False,
        )
        assert reasons(match(app, make_offer())) == ["InsufficientPorts"]

    def test_port_mapping_without_host_port_uses_none(self):
        app = make_app(
            container={
                "type": "MESOS",
                "portMappings": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}],
            },
            networks=[{"mode": "container", "name": "dcos"}],
        )
        m = ok(match(app, make_offer(ports=[(31000, 31000)])))
        assert m.host_ports == [31000]

    def test_reserved_ports_need_role(self):
        offer = make_offer(
            resources=[
                res_scalar("cpus", 4),
                res_scalar("mem", 4096),
                res_ports([(80, 80)], "slave_public"),
                res_ports([(31000, 31000)]),
            ]
        )
        app = make_app(portDefinitions=[{"port": 80}], requirePorts=True)
        assert reasons(match(app, offer)) == ["InsufficientPorts"]
        app["acceptedResourceRoles"] = ["slave_public", "*"]
        m = ok(match(app, offer))
        port_res = [r for r in m.resources if r["name"] == "ports"]
        assert port_res[0]["role"] == "slave_public"
        assert port_res[0]["ranges"] == {"range": [{"begin": 80, "end": 80}]}


# -- several instances from one offer ---------------------------------------------------------------


class TestRemaining:
    def test_remaining_subtracts_everything(self):
        app = make_app(cpus=1, mem=1000, portDefinitions=[{"port": 31000}], requirePorts=True)
        offer = make_offer(cpus=2.5, mem=2048, ports=[(31000, 31002)])
        m = ok(match(app, offer))
        rest = {r["name"]: r for r in m.remaining["resources"]}
        assert rest["cpus"]["scalar"]["value"] == 1.5
        assert rest["mem"]["scalar"]["value"] == 1048
        assert rest["ports"]["ranges"] == {"range": [{"begin": 31001, "end": 31002}]}
        assert rest["cpus"]["allocation_info"] == {"role": "slave_public"}
        assert m.remaining["id"] == offer["id"]
        assert offer["resources"][0]["scalar"]["value"] == 2.5  # input untouched

    def test_exhausted_resources_disappear(self):
        m = ok(match(make_app(cpus=4, mem=4096), make_offer()))
        assert {r["name"] for r in m.remaining["resources"]} == {"disk", "ports"}

    def test_place_until_full(self):
        app = make_app(cpus=1, mem=1024, portDefinitions=[{"port": 0}])
        offer = make_offer(cpus=4, mem=3000, ports=[(31000, 31010)])
        placed: list[Placement] = []
        seen_ports: set[int] = set()
        for _ in range(2):
            m = ok(match(app, offer, scheduled_this_round=placed))
            assert not (set(m.host_ports) & seen_ports)
            seen_ports.update(m.host_ports)
            placed.append(m.placement)
            offer = m.remaining
        assert reasons(match(app, offer, scheduled_this_round=placed)) == ["InsufficientMemory"]

    def test_unique_hostname_prevents_second_instance_on_same_offer(self):
        app = make_app(constraints=[["hostname", "UNIQUE"]])
        m = ok(match(app, make_offer()))
        assert reasons(match(app, m.remaining, scheduled_this_round=[m.placement])) == [
            "UnfulfilledConstraint"
        ]

    def test_max_per_counts_already_placed_and_scheduled(self):
        app = make_app(constraints=[["hostname", "MAX_PER", "2"]])
        offer = make_offer()
        m1 = ok(match(app, offer, [place("agent-1")]))
        assert reasons(
            match(app, m1.remaining, [place("agent-1")], scheduled_this_round=[m1.placement])
        ) == ["UnfulfilledConstraint"]


# -- scale down -----------------------------------------------------------------------------------


class TestSelectKills:
    def test_youngest_first(self):
        inst = [("a", place("h1"), 100.0), ("b", place("h2"), 300.0), ("c", place("h3"), 200.0)]
        assert select_kills(make_app(), inst, 2, "YOUNGEST_FIRST") == ["b", "c"]

    def test_oldest_first(self):
        inst = [("a", place("h1"), 100.0), ("b", place("h2"), 300.0), ("c", place("h3"), 200.0)]
        assert select_kills(make_app(), inst, 2, "OLDEST_FIRST") == ["a", "c"]

    def test_count_bounds(self):
        inst = [("a", place("h1"), 1.0), ("b", place("h2"), 2.0)]
        assert select_kills(make_app(), inst, 0, "YOUNGEST_FIRST") == []
        assert sorted(select_kills(make_app(), inst, 5, "YOUNGEST_FIRST")) == ["a", "b"]

    def test_group_by_keeps_balance(self):
        app = make_app(constraints=[["rack", "GROUP_BY"]])
        inst = [
            ("a1", place("h1", rack="r1"), 1.0),
            ("a2", place("h2", rack="r1"), 2.0),
            ("a3", place("h3", rack="r1"), 3.0),
            ("b1", place("h4", rack="r2"), 9.0),  # youngest, but on the small rack
        ]
        kills = select_kills(app, inst, 2, "YOUNGEST_FIRST")
        assert set(kills) <= {"a1", "a2", "a3"}
        # among equally good candidates the kill selection decides
        assert kills == ["a3", "a2"]

    def test_group_by_oldest_first_among_candidates(self):
        app = make_app(constraints=[["rack", "GROUP_BY"]])
        inst = [
            ("a1", place("h1", rack="r1"), 1.0),
            ("a2", place("h2", rack="r1"), 2.0),
            ("b1", place("h4", rack="r2"), 0.5),
        ]
        assert select_kills(app, inst, 1, "OLDEST_FIRST") == ["a1"]

    def test_group_by_balanced_falls_back_to_kill_selection(self):
        app = make_app(constraints=[["rack", "GROUP_BY"]])
        inst = [
            ("a1", place("h1", rack="r1"), 1.0),
            ("a2", place("h2", rack="r1"), 5.0),
            ("b1", place("h3", rack="r2"), 3.0),
            ("b2", place("h4", rack="r2"), 4.0),
        ]
        kills = select_kills(app, inst, 2, "YOUNGEST_FIRST")
        # first the youngest (a2), then rack r2 has more instances
        assert kills == ["a2", "b2"]

    def test_group_by_zone(self):
        app = make_app(constraints=[["@zone", "GROUP_BY"]])
        inst = [
            ("a1", Placement("S1", "h1", REGION, "a", {}), 1.0),
            ("a2", Placement("S2", "h2", REGION, "a", {}), 2.0),
            ("b1", Placement("S3", "h3", REGION, "b", {}), 3.0),
        ]
        assert select_kills(app, inst, 1, "YOUNGEST_FIRST") == ["a2"]

    def test_other_constraints_do_not_steer(self):
        app = make_app(constraints=[["hostname", "UNIQUE"]])
        inst = [("a", place("h1"), 1.0), ("b", place("h2"), 2.0)]
        assert select_kills(app, inst, 1, "YOUNGEST_FIRST") == ["b"]
