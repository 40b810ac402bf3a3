"""IP-per-task in Marathon: normal form, the task environment, TaskInfo networks and discovery,
and the task addresses taken from the statuses."""

from __future__ import annotations

import random
from typing import Any

from playground.marathon import appdef, core


def container_app(*mappings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    raw = {
        "id": "/web",
        "cmd": "serve",
        "networks": [{"mode": "container", "name": "dcos"}],
        "container": {"type": "MESOS", "portMappings": list(mappings)},
        **extra,
    }
    return appdef.normalize_app(raw)


def test_a_container_network_mapping_asks_for_no_host_port_but_a_bridge_one_does() -> None:
    """hostPort defaults to 0 in bridge mode only (USER/container mode allocates none)."""
    app = container_app({"containerPort": 8080, "name": "http"})
    assert app["container"]["portMappings"] == [
        {"containerPort": 8080, "name": "http", "protocol": "tcp", "servicePort": 0}
    ]
    assert appdef.port_specs(app) == []
    bridge = appdef.normalize_app(
        {
            "id": "/b",
            "cmd": "x",
            "networks": [{"mode": "container/bridge"}],
            "container": {"type": "MESOS", "portMappings": [{"containerPort": 80}]},
        }
    )
    assert bridge["container"]["portMappings"][0]["hostPort"] == 0


def test_env_of_a_container_port_without_host_port_is_the_container_port() -> None:
    """PORT0, PORT_8080 and PORT_HTTP are the container port; PORT/PORTS only list host ports."""
    app = container_app({"containerPort": 8080, "name": "http"})
    env = appdef.task_env(app, host="127.77.5.20", host_ports=[], task_id="t")
    assert {k: v for k, v in env.items() if k.startswith("PORT")} == {
        "PORT0": "8080",
        "PORT_8080": "8080",
        "PORT_HTTP": "8080",
        "PORTS": "",
    }
    assert env["HOST"] == "127.77.5.20"  # the agent replaces it with the task's address


def test_env_mixes_host_ports_container_ports_and_generated_ones() -> None:
    """A mapping with a host port gives the host port; containerPort 0 without one a random port."""
    app = container_app(
        {"containerPort": 80, "name": "web"},
        {"containerPort": 9000, "hostPort": 0, "name": "admin"},
        {"containerPort": 0},
    )
    assert appdef.effective_ports(app, [31007]) == [None, 31007, None]
    env = appdef.ports_env(
        appdef.port_requests(app), appdef.effective_ports(app, [31007]), random.Random(1)
    )
    generated = int(env["PORT2"])
    assert 1025 <= generated <= 65535 and generated not in (80, 9000, 31007)
    assert {k: v for k, v in env.items()} == {
        "PORT0": "80",
        "PORT1": "31007",
        "PORT2": str(generated),
        "PORT_80": "80",
        "PORT_9000": "31007",
        f"PORT_{generated}": str(generated),
        "PORT_WEB": "80",
        "PORT_ADMIN": "31007",
        "PORT": "31007",
        "PORTS": f"31007,{generated}",
    }


def test_host_networking_env_is_unchanged() -> None:
    """Host networking: PORTn, PORT_<port>, PORT_<NAME>, PORT and PORTS are host ports."""
    app = appdef.normalize_app(
        {"id": "/h", "cmd": "x", "portDefinitions": [{"port": 10001, "name": "http"}, {"port": 0}]}
    )
    env = appdef.task_env(app, host="h", host_ports=[31001, 31002], task_id="t")
    assert {k: v for k, v in env.items() if k.startswith("PORT")} == {
        "PORT0": "31001",
        "PORT1": "31002",
        "PORT_10001": "31001",
        "PORT_31002": "31002",
        "PORT_HTTP": "31001",
        "PORT": "31001",
        "PORTS": "31001,31002",
    }


def test_task_info_asks_mesos_for_the_network_and_advertises_container_ports() -> None:
    """network_infos name the network (with host port mappings); discovery ports carry scopes."""
    app = container_app(
        {"containerPort": 8080, "name": "http", "labels": {"VIP_0": "/web:80"}},
        {"containerPort": 0, "hostPort": 0, "protocol": "udp,tcp"},
        networks=[{"mode": "container", "name": "dcos", "labels": {"tier": "web"}}],
    )
    assert core._network_infos(app, [31500]) == [
        {
            "name": "dcos",
            "labels": {"labels": [{"key": "tier", "value": "web"}]},
            "port_mappings": [
                {"host_port": 31500, "container_port": 31500, "protocol": "udp"},
                {"host_port": 31500, "container_port": 31500, "protocol": "tcp"},
            ],
        }
    ]
    ports = core._container_discovery_ports(app, [31500])
    assert ports[0] == {
        "number": 8080,
        "protocol": "tcp",
        "name": "http",
        "labels": {
            "labels": [
                {"key": "VIP_0", "value": "/web:80"},
                {"key": "network-scope", "value": "container"},
                {"key": "network-name", "value": "dcos"},
            ]
        },
    }
    assert [
        (p["number"], p["protocol"], p["labels"]["labels"][-1]["value"]) for p in ports[1:]
    ] == [
        (31500, "udp", "host"),
        (31500, "tcp", "host"),
    ]


def test_task_addresses_come_from_the_statuses() -> None:
    """ipAddresses: the network_infos of the latest status; the agent's address until known."""
    inst = core.Instance("i", "/web", "v", "v", host_ip="127.77.5.20")
    assert inst.addresses() == ["127.77.5.20"]
    inst.ip_addresses = []  # launched on a container network, no status yet
    assert inst.addresses() == []
    status = {
        "container_status": {
            "network_infos": [
                {"name": "dcos", "ip_addresses": [{"protocol": "IPv4", "ip_address": "127.80.5.7"}]}
            ]
        }
    }
    assert core._status_addresses(status) == ["127.80.5.7"]
    assert core._status_addresses({"state": "TASK_LOST"}) == []
    # persisted instances of older versions have no such field: they load as before
    old = core.Instance.from_json(
        {k: v for k, v in inst.to_json().items() if k not in ("ip_addresses", "launch_error")}
    )
    assert old.ip_addresses is None and old.launch_error is None


def test_checks_reach_a_container_task_on_its_address_and_container_ports() -> None:
    """Health and readiness checks use the task's own IP and container ports."""
    app = container_app(
        {"containerPort": 8080, "name": "http"}, {"containerPort": 9000, "hostPort": 0}
    )
    inst = core.Instance("i", "/web", "v", "v", host_ip="127.77.5.20", ports=[31200])
    inst.ip_addresses = ["127.80.5.7"]
    assert core.check_target(app, inst) == ("127.80.5.7", [8080, 9000], ["http", None])
    host_app = appdef.normalize_app(
        {"id": "/h", "cmd": "x", "portDefinitions": [{"port": 10001, "name": "a"}]}
    )
    inst.ip_addresses = ["127.77.5.20"]
    assert core.check_target(host_app, inst) == ("127.77.5.20", [31200], ["a"])
