"""``playground.edge.config.build``: marathon-lb's label and task rules on Marathon payloads.

The rules come from marathon-lb's ``marathon_lb.py`` (``get_apps``, ``config``,
``get_health_check``), ``utils.py`` (networking modes, task addresses) and ``config.py``
(label setters); the additions (notices, conflicts) from the module docstring.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from playground.edge.config import build, calculate_server_id, server_name
from playground.edge.model import EdgeConfig, Notice, Service
from tests.support.edge_apps import bridge_app, health_check, host_app, ip_per_task_app, task


def only(cfg: EdgeConfig) -> Service:
    assert len(cfg.services) == 1, cfg.services
    return cfg.services[0]


def notices(cfg: EdgeConfig, kind: str) -> list[Notice]:
    return [n for n in cfg.notices if n.kind == kind]


def one_task_app(app_id: str = "/web", labels: dict[str, str] | None = None, **kw: Any) -> dict:
    return host_app(app_id, (10000,), [task("web.1", "10.0.0.1", (31000,))], labels, **kw)


# --------------------------------------------------------------------------- groups


def test_only_apps_of_the_edge_group_are_served() -> None:
    apps = [
        one_task_app("/ext"),
        host_app("/int", (10001,), [task("i.1")], group="internal"),
        host_app("/nogroup", (10002,), [task("n.1")], group=None),
    ]
    cfg = build(apps, "external")
    assert [s.app_id for s in cfg.services] == ["/ext"]
    assert cfg.services[0].groups == ("external",)
    assert cfg.group == "external"
    assert cfg.notices == ()


def test_group_star_takes_every_app_even_without_a_group() -> None:
    apps = [one_task_app("/ext")]
    apps.append(host_app("/int", (10001,), [task("i.1")], group="internal"))
    apps.append(host_app("/nogroup", (10002,), [task("n.1")], group=None))
    cfg = build(apps, "*")
    assert [s.app_id for s in cfg.services] == ["/ext", "/int", "/nogroup"]


def test_group_labels_and_edge_groups_are_comma_separated_lists() -> None:
    apps = [host_app("/both", (10000,), [task("b.1")], group="internal, external")]
    assert [s.backend for s in build(apps, "external").services] == ["both_10000"]
    apps = [host_app("/a", (10000,), [task("a.1")], group="blue")]
    apps.append(host_app("/b", (10001,), [task("b.1")], group="green"))
    apps.append(host_app("/c", (10002,), [task("c.1")], group="red"))
    assert [s.app_id for s in build(apps, "green,blue").services] == ["/a", "/b"]


def test_per_port_group_overrides_the_app_group() -> None:
    """marathon-lb Longhelp ``HAPROXY_{n}_GROUP``: the more specific definition wins."""
    app = host_app(
        "/svc",
        (10000, 10001),
        [task("svc.1", ports=(31000, 31001))],
        {"HAPROXY_0_GROUP": "external"},
        group="internal",
    )
    external = build([app], "external")
    internal = build([app], "internal")
    assert [(s.port_index, s.service_port, s.groups) for s in external.services] == [
        (0, 10000, ("external",))
    ]
    assert [(s.port_index, s.service_port, s.groups) for s in internal.services] == [
        (1, 10001, ("internal",))
    ]


# --------------------------------------------------------------------------- names


def test_backend_name_is_the_app_id_with_underscores_and_the_service_port() -> None:
    app = host_app("/shop/web-front", (10001,), [task("shop_web-front.1")])
    service = only(build([app]))
    assert service.backend == "shop_web-front_10001"
    assert service.app_id == "/shop/web-front"


def test_server_names_follow_marathon_lb() -> None:
    # tests/test_marathon_lb.py: host agent1, IP 1.1.1.1, port 1024 -> agent1_1_1_1_1_1024;
    # tests/test_zdd.py: host 10.0.6.25 (its own IP), port 16916 -> 10_0_6_25_16916.
    assert server_name("agent1", "1.1.1.1", 1024) == "agent1_1_1_1_1_1024"
    assert server_name("10.0.6.25", "10.0.6.25", 16916) == "10_0_6_25_16916"
    assert server_name("agent.b", "fd00::1", 80) == "agent_b_fd00__1_80"


def test_server_ids_match_marathon_lb() -> None:
    """tests/test_marathon_lb.py TestServerIdGeneration (ids and collision handling)."""
    taken: set[int] = set()
    got = [calculate_server_id(n, taken) for n in ("0", "1", "a", "10_0_6_25_23336")]
    assert got == [17068, 25733, 25929, 14676]
    taken = set()
    names = ["yftjqzplpu", "ttccbfrdhi", "ilvparharq", "gpagkxfzou", "dcsfcvfolh", "tsqkugaath"]
    assert [calculate_server_id(n, taken) for n in names] == [
        28876,
        7893,
        22002,
        21805,
        20892,
        25675,
    ]
    assert taken == {28876, 7893, 22002, 21805, 20892, 25675}


# --------------------------------------------------------------------------- mode


@pytest.mark.parametrize(
    ("labels", "checks", "mode"),
    [
        ({}, [], "tcp"),
        ({"HAPROXY_0_VHOST": "web.example.com"}, [], "http"),
        ({}, [health_check("HTTP")], "http"),
        # only protocol HTTP makes the mode http (MarathonService.__init__)
        ({}, [health_check("MESOS_HTTP")], "tcp"),
        ({}, [health_check("HTTPS")], "tcp"),
        ({}, [health_check("TCP")], "tcp"),
        ({"HAPROXY_0_MODE": "tcp"}, [health_check("HTTP")], "tcp"),
        ({"HAPROXY_0_MODE": "HTTP"}, [], "http"),
        ({"HAPROXY_0_MODE": "http"}, [health_check("TCP")], "http"),
    ],
)
def test_mode_rule(labels: dict[str, str], checks: list[dict], mode: str) -> None:
    tasks = [task("web.1", alive=True)] if checks else [task("web.1")]
    app = host_app("/web", (10000,), tasks, labels, health_checks=checks)
    service = only(build([app]))
    assert service.mode == mode
    assert service.health_check == (checks[0] if checks else None)


def test_a_health_check_borrowed_by_port_index_forces_http_over_the_mode_label() -> None:
    app = host_app(
        "/web",
        (10000, 10001),
        [task("web.1", ports=(31000, 31001), alive=True)],
        {"HAPROXY_0_MODE": "tcp", "HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX": "1"},
        health_checks=[health_check("MESOS_HTTP", port_index=1, path="/health")],
    )
    port0 = build([app]).services[0]
    assert port0.port_index == 0
    assert port0.mode == "http"
    assert port0.health_check is not None and port0.health_check["path"] == "/health"
    assert port0.servers[0].check_port == 31001


def test_unknown_mode_is_a_malformed_label_and_the_default_applies() -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_MODE": "udp"})])
    assert only(cfg).mode == "tcp"
    [n] = notices(cfg, "malformed-label")
    assert n.app_id == "/web"
    assert n.label == "HAPROXY_0_MODE"
    assert "'udp'" in n.message and "/web" in n.message


def test_vhost_on_a_tcp_port_is_dropped_with_a_notice() -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_VHOST": "a.com", "HAPROXY_0_MODE": "tcp"})])
    service = only(cfg)
    assert (service.mode, service.vhosts) == ("tcp", ())
    [n] = notices(cfg, "malformed-label")
    assert n.label == "HAPROXY_0_VHOST"
    assert "tcp" in n.message


# --------------------------------------------------------------------------- per-port labels


def test_vhosts_are_lowercased_split_and_deduplicated() -> None:
    labels = {"HAPROXY_0_VHOST": "Web.Example.com, www.example.com,web.example.com"}
    service = only(build([one_task_app(labels=labels)]))
    assert service.vhosts == ("web.example.com", "www.example.com")
    assert service.mode == "http"
    assert service in build([one_task_app(labels=labels)]).http_services()


def test_a_vhost_that_would_break_the_configuration_is_dropped() -> None:
    labels = {"HAPROXY_0_VHOST": "good.example.com,bad{host}.com"}
    cfg = build([one_task_app(labels=labels)])
    assert only(cfg).vhosts == ("good.example.com",)
    [n] = notices(cfg, "malformed-label")
    assert (n.label, "bad{host}.com" in n.message) == ("HAPROXY_0_VHOST", True)


@pytest.mark.parametrize("balance", ["roundrobin", "leastconn", "source"])
def test_balance(balance: str) -> None:
    service = only(build([one_task_app(labels={"HAPROXY_0_BALANCE": balance})]))
    assert service.balance == balance


def test_unknown_balance_is_malformed() -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_BALANCE": "random"})])
    assert only(cfg).balance == "roundrobin"
    [n] = notices(cfg, "malformed-label")
    assert n.label == "HAPROXY_0_BALANCE"


@pytest.mark.parametrize(("value", "sticky"), [("true", True), ("Yes", True), ("f", False)])
def test_sticky(value: str, sticky: bool) -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_STICKY": value})])
    assert only(cfg).sticky is sticky
    assert cfg.notices == ()


def test_sticky_that_is_not_a_boolean_is_malformed() -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_STICKY": "1"})])
    assert only(cfg).sticky is False
    assert [n.label for n in notices(cfg, "malformed-label")] == ["HAPROXY_0_STICKY"]


@pytest.mark.parametrize(
    ("labels", "weight"),
    [
        ({}, 0),
        ({"HAPROXY_0_BACKEND_WEIGHT": "5"}, 5),
        ({"HAPROXY_0_VHOST": "a.com", "HAPROXY_0_PATH": "/api"}, 1),
        (
            {"HAPROXY_0_VHOST": "a.com", "HAPROXY_0_PATH": "/api", "HAPROXY_0_BACKEND_WEIGHT": "0"},
            1,
        ),
        (
            {"HAPROXY_0_VHOST": "a.com", "HAPROXY_0_PATH": "/api", "HAPROXY_0_BACKEND_WEIGHT": "3"},
            3,
        ),
        ({"HAPROXY_0_BACKEND_WEIGHT": "-2"}, -2),
    ],
)
def test_backend_weight(labels: dict[str, str], weight: int) -> None:
    service = only(build([one_task_app(labels=labels)]))
    assert service.backend_weight == weight


def test_weight_that_is_not_an_integer_and_the_app_wide_form_are_malformed() -> None:
    labels = {"HAPROXY_0_BACKEND_WEIGHT": "heavy", "HAPROXY_BACKEND_WEIGHT": "2"}
    cfg = build([one_task_app(labels=labels)])
    assert only(cfg).backend_weight == 0
    assert sorted(n.label or "" for n in notices(cfg, "malformed-label")) == [
        "HAPROXY_0_BACKEND_WEIGHT",
        "HAPROXY_BACKEND_WEIGHT",
    ]


def test_path_is_kept() -> None:
    labels = {"HAPROXY_0_VHOST": "a.com", "HAPROXY_0_PATH": "-i /api /v2"}
    assert only(build([one_task_app(labels=labels)])).path == "-i /api /v2"


def test_enabled_false_skips_the_port() -> None:
    app = host_app(
        "/web",
        (10000, 10001),
        [task("web.1", ports=(31000, 31001))],
        {"HAPROXY_1_ENABLED": "false"},
    )
    assert [s.port_index for s in build([app]).services] == [0]


def test_strict_mode_serves_only_enabled_ports() -> None:
    app = host_app(
        "/web",
        (10000, 10001),
        [task("web.1", ports=(31000, 31001))],
        {"HAPROXY_1_ENABLED": "true"},
    )
    assert [s.port_index for s in build([app], strict_mode=True).services] == [1]
    assert [s.port_index for s in build([app]).services] == [0, 1]


def test_port_label_overrides_the_service_port() -> None:
    service = only(build([one_task_app(labels={"HAPROXY_0_PORT": "10500"})]))
    assert (service.service_port, service.backend) == (10500, "web_10500")


@pytest.mark.parametrize("value", ["http", "70000", "0", ""])
def test_bad_port_label_is_malformed_and_the_service_port_stays(value: str) -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_PORT": value})])
    assert only(cfg).service_port == 10000
    [n] = notices(cfg, "malformed-label")
    assert (n.app_id, n.label) == ("/web", "HAPROXY_0_PORT")
    assert repr(value) in n.message


def test_bind_address_is_the_edge_host_unless_a_label_says_otherwise() -> None:
    assert only(build([one_task_app()])).bind_address == "*"
    assert only(build([one_task_app()], edge_host="127.0.0.9")).bind_address == "127.0.0.9"
    labeled = one_task_app(labels={"HAPROXY_0_BIND_ADDR": "10.0.0.42"})
    assert only(build([labeled], edge_host="127.0.0.9")).bind_address == "10.0.0.42"
    bad = build([one_task_app(labels={"HAPROXY_0_BIND_ADDR": "10.0.0.42 ssl"})])
    assert only(bad).bind_address == "*"
    assert [n.label for n in bad.notices] == ["HAPROXY_0_BIND_ADDR"]


def test_label_for_a_port_the_app_does_not_have_is_malformed() -> None:
    cfg = build([one_task_app(labels={"HAPROXY_3_VHOST": "a.com"})])
    assert only(cfg).vhosts == ()
    [n] = notices(cfg, "malformed-label")
    assert n.label == "HAPROXY_3_VHOST"
    assert "port index 3" in n.message


def test_unknown_haproxy_label_is_malformed_and_kept() -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_VHOTS": "a.com"})])
    assert only(cfg).labels == {"HAPROXY_0_VHOTS": "a.com"}
    assert [n.label for n in notices(cfg, "malformed-label")] == ["HAPROXY_0_VHOTS"]


def test_unsupported_labels_are_kept_with_a_notice() -> None:
    labels = {
        "HAPROXY_0_SSL_CERT": "/etc/ssl/site.pem",
        "HAPROXY_0_FRONTEND_HEAD": "\nfrontend {backend}\n",
        "HAPROXY_1_REDIRECT_TO_HTTPS": "true",
        "HAPROXY_APP_ID": "web",
    }
    cfg = build([one_task_app(labels=labels)])
    service = only(cfg)
    assert service.labels == {
        "HAPROXY_0_SSL_CERT": "/etc/ssl/site.pem",
        "HAPROXY_0_FRONTEND_HEAD": "\nfrontend {backend}\n",
        "HAPROXY_APP_ID": "web",
    }
    assert sorted(n.label or "" for n in notices(cfg, "unsupported-label")) == [
        "HAPROXY_0_FRONTEND_HEAD",
        "HAPROXY_0_SSL_CERT",
    ]
    # HAPROXY_1_*: the app has one port
    assert [n.label for n in notices(cfg, "malformed-label")] == ["HAPROXY_1_REDIRECT_TO_HTTPS"]


def test_notices_of_apps_this_edge_does_not_serve_are_not_its_business() -> None:
    app = one_task_app(labels={"HAPROXY_0_MODE": "udp"}, group="internal")
    assert build([app], "external") == EdgeConfig(group="external")


# --------------------------------------------------------------------------- conflicts


def test_two_apps_on_one_service_port_the_first_by_app_id_keeps_it() -> None:
    b = host_app("/b", (10000,), [task("b.1", "10.0.0.2")])
    a = host_app("/a", (10000,), [task("a.1", "10.0.0.1")])
    for apps in ([a, b], [b, a]):
        cfg = build(apps)
        assert [s.backend for s in cfg.services] == ["a_10000"]
        assert cfg.by_port()[10000].app_id == "/a"
        [n] = notices(cfg, "conflict")
        assert n.app_id == "/b"
        assert "/a" in n.message and "b_10000" in n.message and "10000" in n.message


def test_port_label_conflict_names_the_label() -> None:
    a = host_app("/a", (10000,), [task("a.1")])
    b = host_app("/b", (10001,), [task("b.1")], {"HAPROXY_0_PORT": "10000"})
    cfg = build([a, b])
    assert [s.app_id for s in cfg.services] == ["/a"]
    [n] = notices(cfg, "conflict")
    assert (n.app_id, n.label) == ("/b", "HAPROXY_0_PORT")


def test_a_service_port_on_an_edge_listener_is_a_conflict() -> None:
    cfg = build([one_task_app(labels={"HAPROXY_0_PORT": "80"})])
    assert cfg.services == ()
    [n] = notices(cfg, "conflict")
    assert "marathon_http_in" in n.message
    custom = build([one_task_app()], reserved_ports={10000: "stats"})
    assert custom.services == ()
    assert "stats" in custom.notices[0].message
    assert only(build([one_task_app(labels={"HAPROXY_0_PORT": "80"})], reserved_ports={}))


def test_same_vhost_the_first_app_keeps_it_the_other_is_served_on_its_port_only() -> None:
    a = host_app("/a", (10000,), [task("a.1")], {"HAPROXY_0_VHOST": "shop.com,a.com"})
    b = host_app("/b", (10001,), [task("b.1")], {"HAPROXY_0_VHOST": "b.com,SHOP.com"})
    for apps in ([a, b], [b, a]):
        cfg = build(apps)
        by_app = {s.app_id: s for s in cfg.services}
        assert by_app["/a"].vhosts == ("shop.com", "a.com")
        assert by_app["/b"].vhosts == ("b.com",)
        assert by_app["/b"].service_port == 10001
        [n] = notices(cfg, "conflict")
        assert (n.app_id, n.label) == ("/b", "HAPROXY_0_VHOST")
        assert "shop.com" in n.message and "a_10000" in n.message


def test_same_vhost_with_different_paths_is_no_conflict_same_path_is() -> None:
    a = host_app("/a", (10000,), [task("a.1")], {"HAPROXY_0_VHOST": "x.com"})
    b = host_app(
        "/b", (10001,), [task("b.1")], {"HAPROXY_0_VHOST": "x.com", "HAPROXY_0_PATH": "/api"}
    )
    c = host_app(
        "/c", (10002,), [task("c.1")], {"HAPROXY_0_VHOST": "x.com", "HAPROXY_0_PATH": "/api"}
    )
    cfg = build([a, b, c])
    assert [(s.app_id, s.vhosts) for s in cfg.services] == [
        ("/a", ("x.com",)),
        ("/b", ("x.com",)),
        ("/c", ()),
    ]
    [n] = notices(cfg, "conflict")
    assert n.app_id == "/c" and "/b" in n.message and "'/api'" in n.message


# --------------------------------------------------------------------------- tasks and health


def test_health_filtering_keeps_every_running_task_and_marks_the_ones_without_traffic() -> None:
    tasks = [
        task("web.1", "10.0.0.1", (31001,), alive=True),
        task("web.2", "10.0.0.2", (31002,), alive=False),
        task("web.3", "10.0.0.3", (31003,)),  # no result yet
        task("web.4", "10.0.0.4", (31004,), alive=[False, True]),  # marathon-lb: any alive
        task("web.5", "10.0.0.5", (31005,), alive=[]),
        task("web.6", "10.0.0.6", (31006,), state="TASK_STAGING"),
        task("web.7", "10.0.0.7", (31007,), state="TASK_KILLED", alive=True),
        task("web.8", "10.0.0.8", (31008,), state="TASK_UNREACHABLE", alive=True),
        task("web.9", "", (31009,), alive=True),  # no host
    ]
    app = host_app("/web", (10000,), tasks, health_checks=[health_check("HTTP")])
    service = only(build([app]))
    assert [(s.task_id, s.healthy, s.reason) for s in service.servers] == [
        ("web.1", True, ""),
        ("web.2", False, "health checks failing"),
        ("web.3", False, "no health check result yet"),
        ("web.4", True, ""),
        ("web.5", False, "health checks failing"),
        ("web.8", True, ""),
    ]
    assert [s.task_id for s in service.live_servers] == ["web.1", "web.4", "web.8"]


def test_without_health_checks_every_running_task_gets_traffic() -> None:
    tasks = [task("web.1", "10.0.0.1"), task("web.2", "10.0.0.2", state=None)]
    service = only(build([host_app("/web", (10000,), tasks)]))
    assert [(s.task_id, s.healthy) for s in service.servers] == [("web.1", True), ("web.2", True)]


def test_health_cache_keeps_the_last_verdict_of_a_task_whose_results_vanish() -> None:
    checks = [health_check("HTTP")]
    cache: dict[str, bool] = {}
    first = host_app("/web", (10000,), [task("web.1", alive=True)], health_checks=checks)
    assert only(build([first], health_cache=cache)).servers[0].healthy
    assert cache == {"web.1": True}
    later = host_app("/web", (10000,), [task("web.1")], health_checks=checks)
    assert only(build([later], health_cache=cache)).servers[0].healthy
    assert not only(build([later])).servers[0].healthy
    gone = host_app("/web", (10000,), [task("web.2", alive=False)], health_checks=checks)
    build([gone], health_cache=cache)
    assert cache == {"web.2": False}


def test_a_task_with_fewer_ports_than_the_app_feeds_only_the_first_services() -> None:
    tasks = [task("web.1", "10.0.0.1", (31000, 31001)), task("web.2", "10.0.0.2", (32000,))]
    cfg = build([host_app("/web", (10000, 10001), tasks)])
    assert [[s.task_id for s in svc.servers] for svc in cfg.services] == [
        ["web.1", "web.2"],
        ["web.1"],
    ]


def test_servers_are_sorted_by_agent_host_then_port() -> None:
    tasks = [
        task("web.1", "10.0.6.25", (31184,)),
        task("web.2", "10.0.1.147", (25724,)),
        task("web.3", "10.0.6.25", (16916,)),
    ]
    service = only(build([host_app("/web", (10000,), tasks)]))
    assert [s.name for s in service.servers] == [
        "10_0_1_147_25724",
        "10_0_6_25_16916",
        "10_0_6_25_31184",
    ]


def test_an_app_without_tasks_is_a_service_without_servers() -> None:
    service = only(build([host_app("/web", (10000,), [])]))
    assert service.servers == () and service.live_servers == ()


def test_build_does_not_modify_its_input() -> None:
    apps = [
        host_app(
            "/blue", (10001,), [task("blue.1", alive=True)], _zdd("blue", "2024-01-02T00:00:00")
        ),
        host_app(
            "/green", (10000,), [task("green.1", alive=True)], _zdd("green", "2024-01-01T00:00:00")
        ),
    ]
    before = copy.deepcopy(apps)
    build(apps)
    assert apps == before


# --------------------------------------------------------------------------- addresses


def test_host_networking_uses_the_agent_and_the_host_port() -> None:
    service = only(build([host_app("/web", (10000,), [task("web.1", "10.0.0.7", (31555,))])]))
    [s] = service.servers
    assert (s.host, s.port, s.agent_host, s.name) == (
        "10.0.0.7",
        31555,
        "10.0.0.7",
        "10_0_0_7_31555",
    )


def test_a_host_name_is_kept_as_the_address() -> None:
    service = only(build([host_app("/web", (10000,), [task("web.1", "agent1", (31555,))])]))
    [s] = service.servers
    assert (s.host, s.port, s.name) == ("agent1", 31555, "agent1_31555")


def test_bridge_networking_uses_the_agent_and_the_mapped_host_port() -> None:
    app = bridge_app(
        "/web",
        ((80, 10000), (443, 10001)),
        [task("web.1", "10.0.0.3", (31080, 31443), ips=("172.17.0.2",))],
    )
    cfg = build([app])
    assert [(s.service_port, s.servers[0].host, s.servers[0].port) for s in cfg.services] == [
        (10000, "10.0.0.3", 31080),
        (10001, "10.0.0.3", 31443),
    ]
    assert cfg.services[0].servers[0].name == "10_0_0_3_31080"


def test_ip_per_task_uses_the_task_ip_and_the_container_port() -> None:
    app = ip_per_task_app(
        "/web",
        ((8080, 10000),),
        [
            task("web.1", "10.0.0.3", (), ips=("9.0.0.11",)),
            task("web.2", "10.0.0.3", (), ips=()),  # no address allocated yet: left out
        ],
    )
    service = only(build([app]))
    [s] = service.servers
    assert (s.host, s.port, s.agent_host) == ("9.0.0.11", 8080, "10.0.0.3")
    assert s.name == "10_0_0_3_9_0_0_11_8080"
    assert service.service_port == 10000


def test_legacy_docker_user_network_and_ip_address_discovery() -> None:
    """Marathon <= 1.4 shapes: ``docker.network: USER`` and ``ipAddress.discovery``."""
    user = {
        "id": "/user",
        "labels": {"HAPROXY_GROUP": "external"},
        "container": {
            "type": "DOCKER",
            "docker": {
                "image": "nginx",
                "network": "USER",
                "portMappings": [{"containerPort": 80, "servicePort": 10010}],
            },
        },
        "ipAddress": {"networkName": "calico"},
        "tasks": [task("user.1", "10.0.0.4", (), ips=("9.0.0.4",))],
    }
    discovery = {
        "id": "/disco",
        "labels": {"HAPROXY_GROUP": "external"},
        "ipAddress": {"discovery": {"ports": [{"number": 8080, "name": "http"}]}},
        "tasks": [task("disco.1", "10.0.0.5", (), ips=("9.0.0.5",))],
    }
    cfg = build([user, discovery])
    got = {s.app_id: (s.service_port, s.servers[0].host, s.servers[0].port) for s in cfg.services}
    assert got["/user"] == (10010, "9.0.0.4", 80)
    # no service port: marathon-lb's ServicePortAssigner picks one in 10050-10100
    port, host, task_port = got["/disco"]
    assert 10050 <= port <= 10100
    assert (host, task_port) == ("9.0.0.5", 8080)
    assert build([discovery]).services[0].service_port == port  # deterministic


# --------------------------------------------------------------------------- health-check ports


def test_fixed_health_check_port_and_port_index_label_give_the_check_port() -> None:
    fixed = host_app(
        "/fixed",
        (10000,),
        [task("fixed.1", ports=(31000,), alive=True)],
        health_checks=[health_check("HTTP", port=9999)],
    )
    assert only(build([fixed])).servers[0].check_port == 9999
    indexed = host_app(
        "/idx",
        (10000, 10001),
        [task("idx.1", ports=(31000, 31001), alive=True)],
        {"HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX": "1"},
        health_checks=[health_check("HTTP", port_index=0)],
    )
    port0, port1 = build([indexed]).services
    assert (port0.servers[0].check_port, port1.servers[0].check_port) == (31001, None)
    out_of_range = copy.deepcopy(indexed)
    out_of_range["labels"]["HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX"] = "3"
    assert build([out_of_range]).services[0].servers[0].check_port == 31000


# --------------------------------------------------------------------------- zdd


def _zdd(colour: str, started: str, **more: str) -> dict[str, str]:
    return {
        "HAPROXY_DEPLOYMENT_GROUP": "shop",
        "HAPROXY_DEPLOYMENT_COLOUR": colour,
        "HAPROXY_DEPLOYMENT_ALT_PORT": "10001",
        "HAPROXY_DEPLOYMENT_STARTED_AT": started,
        "HAPROXY_0_PORT": "10000",
        **more,
    }


def _blue_green(
    new_tasks: int,
    *,
    new_labels: dict[str, str] | None = None,
    old_labels: dict[str, str] | None = None,
) -> list[dict]:
    checks = [health_check("HTTP")]
    green = host_app(
        "/shop-green",
        (10000,),
        [task(f"shop-green.{i}", "10.0.0.1", (31000 + i,), alive=True) for i in range(3)],
        old_labels or _zdd("green", "2024-01-01T10:00:00"),
        health_checks=checks,
        instances=3,
    )
    blue = host_app(
        "/shop-blue",
        (10001,),
        [task(f"shop-blue.{i}", "10.0.0.2", (32000 + i,), alive=True) for i in range(new_tasks)],
        new_labels or _zdd("blue", "2024-01-01T11:00:00"),
        health_checks=checks,
        instances=new_tasks,
    )
    return [blue, green]


def test_zdd_merges_a_deployment_group_into_one_service_and_drains_old_tasks() -> None:
    cfg = build(_blue_green(2))
    service = only(cfg)
    assert (service.app_id, service.backend, service.service_port) == ("/shop", "shop_10000", 10000)
    # target 1 (no HAPROXY_DEPLOYMENT_NEW_INSTANCES): drain min(3 old, 2 healthy new,
    # 2 + 3 - 1) = 2 old tasks, the first by task id
    assert [(s.task_id, s.draining) for s in service.servers] == [
        ("shop-green.0", True),
        ("shop-green.1", True),
        ("shop-green.2", False),
        ("shop-blue.0", False),
        ("shop-blue.1", False),
    ]
    assert [s.task_id for s in service.live_servers] == [
        "shop-green.2",
        "shop-blue.0",
        "shop-blue.1",
    ]
    assert all(s.healthy for s in service.servers)
    assert service.deployment == {
        "group": "shop",
        "colour": "green",
        "alt_port": 10001,
        "started_at": "2024-01-01T10:00:00",
        "apps": ["/shop-green", "/shop-blue"],
        "old_app": "/shop-green",
        "new_app": "/shop-blue",
    }


def test_zdd_drains_only_as_many_old_tasks_as_new_ones_are_healthy() -> None:
    apps = _blue_green(2)
    apps[0]["tasks"][1]["healthCheckResults"] = [{"alive": False}]
    service = only(build(apps))
    assert [s.task_id for s in service.servers if s.draining] == ["shop-green.0"]


def test_zdd_target_instances_bounds_the_draining() -> None:
    labels = _zdd(
        "blue",
        "2024-01-01T11:00:00",
        HAPROXY_DEPLOYMENT_NEW_INSTANCES="0",
        HAPROXY_DEPLOYMENT_TARGET_INSTANCES="4",
    )
    apps = _blue_green(2, new_labels=labels)
    apps[0]["versionInfo"]["lastScalingAt"] = "2024-01-01T12:00:00.000Z"
    service = only(build(apps))
    # drain min(3, 2, 2 + 3 - 4) = 1
    assert [s.task_id for s in service.servers if s.draining] == ["shop-green.0"]
    assert service.deployment["old_app"] == "/shop-green"


def test_zdd_with_new_instances_the_later_scaled_app_is_the_new_one() -> None:
    """marathon-lb swaps old and new by ``versionInfo.lastScalingAt`` when
    HAPROXY_DEPLOYMENT_NEW_INSTANCES is set (its ``int(label != 0)`` is always true)."""
    more = {"HAPROXY_DEPLOYMENT_NEW_INSTANCES": "1", "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "3"}
    apps = _blue_green(
        2,
        new_labels=_zdd("blue", "2024-01-01T11:00:00", **more),
        old_labels=_zdd("green", "2024-01-01T10:00:00", **more),
    )
    apps[1]["versionInfo"]["lastScalingAt"] = "2024-01-02T00:00:00.000Z"  # green scaled later
    service = only(build(apps))
    assert service.deployment["old_app"] == "/shop-blue"
    assert service.service_port == 10000
    # old is blue now: drain min(2 blue tasks, 3 healthy green, 3 + 2 - 3) = 2
    assert [s.task_id for s in service.servers if s.draining] == ["shop-blue.0", "shop-blue.1"]


def test_zdd_malformed_deployment_labels_are_notices_naming_the_labelled_app() -> None:
    labels = _zdd(
        "blue",
        "2024-01-01T11:00:00",
        HAPROXY_DEPLOYMENT_ALT_PORT="ten",
        HAPROXY_DEPLOYMENT_NEW_INSTANCES="1",
    )
    cfg = build(_blue_green(1, new_labels=labels))
    service = only(cfg)
    assert service.app_id == "/shop"
    # no HAPROXY_DEPLOYMENT_TARGET_INSTANCES beside NEW_INSTANCES: target 1, drain
    # min(3, 1, 1 + 3 - 1) = 1
    assert [s.task_id for s in service.servers if s.draining] == ["shop-green.0"]
    assert sorted((n.app_id, n.label) for n in notices(cfg, "malformed-label")) == [
        ("/shop-blue", "HAPROXY_DEPLOYMENT_ALT_PORT"),
        ("/shop-blue", "HAPROXY_DEPLOYMENT_TARGET_INSTANCES"),
    ]
    solo = host_app(
        "/solo",
        (10000,),
        [task("solo.1")],
        {"HAPROXY_DEPLOYMENT_GROUP": "/solo", "HAPROXY_DEPLOYMENT_STARTED_AT": "yesterday"},
    )
    cfg = build([solo])
    assert only(cfg).deployment == {"group": "/solo", "apps": ["/solo"]}
    assert [(n.app_id, n.label) for n in cfg.notices] == [
        ("/solo", "HAPROXY_DEPLOYMENT_STARTED_AT")
    ]
