"""marathon-lb's own test payloads give the backends marathon-lb's own tests expect.

Payloads: ``tests/reference/marathon-lb/examples`` (see its SOURCES.md). Expected values:

* ``marathon15_apps.json``: marathon-lb ``tests/test_marathon_lb.py``
  ``test_bridge_app_marathon15`` (the whole configuration after the global head);
* ``zdd_apps.json``: ``tests/test_marathon_lb.py`` ``test_zdd_app`` (idem, with the
  draining server ``disabled``);
* ``zdd_app_blue.json``, ``zdd_app_blue_marathon1.5.json``: ``tests/test_zdd.py``
  ``test_get_svnames_from_tasks`` (the server names of the app's tasks; zdd.py derives
  them as marathon-lb names its servers);
* ``1-nginx.json``, ``1-nginx-marathon1.5.json``: the app definitions zdd.py deploys
  (``tests/test_zdd.py`` ``_arg_cases``); no tasks, so marathon-lb renders nothing for
  them (``get_apps`` keeps only services with backends).

Where marathon-lb's tests assert nothing, the expectation follows marathon-lb's code and
says so (``MarathonService.__init__``: only a health check of protocol ``HTTP`` makes the
mode http, so the ``MESOS_HTTP`` apps of the Marathon 1.5 payloads are tcp).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from playground.edge.config import RenderSettings, app_map, build, render_haproxy, vhost_map
from playground.edge.model import EdgeConfig
from tests.support.reference import MARATHON_LB

EXAMPLES = MARATHON_LB / "examples"
MARKER = "  monitor-uri /_haproxy_health_check\n"


def load(name: str) -> list[dict[str, Any]]:
    data = json.loads((EXAMPLES / name).read_text())
    return list(data.get("apps", [data]))


def after_head(config: str) -> str:
    """The configuration after marathon-lb's HAPROXY_HEAD (whose last line is the marker
    in the edge's 2.6 head; marathon-lb's own ends with lua lines the edge drops)."""
    return config.split(MARKER, 1)[1]


SETTINGS = RenderSettings(state_dir=Path("/var/lib/edge"), cert_path=Path("/etc/ssl/cert.pem"))

# tests/test_marathon_lb.py test_bridge_app_marathon15, after self.base_config.
BRIDGE_APP_MARATHON15 = """
frontend marathon_http_in
  bind *:80
  mode http
  acl host_myvhost_com_pywebserver hdr(host) -i myvhost.com
  use_backend pywebserver_10101 if host_myvhost_com_pywebserver

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__pywebserver hdr(x-marathon-app-id) -i /pywebserver
  use_backend pywebserver_10101 if app__pywebserver

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
  use_backend pywebserver_10101 if { ssl_fc_sni myvhost.com }

frontend pywebserver_10101
  bind *:10101
  mode http
  use_backend pywebserver_10101

backend pywebserver_10101
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  server 10_0_2_148_1565 10.0.2.148:1565 id 16827
"""

# tests/test_marathon_lb.py test_zdd_app, after self.base_config.
ZDD_APP = """
frontend marathon_http_in
  bind *:80
  mode http

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__nginx hdr(x-marathon-app-id) -i /nginx
  use_backend nginx_10000 if app__nginx

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http

frontend nginx_10000
  bind *:10000
  mode http
  use_backend nginx_10000

backend nginx_10000
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 15s
  server 10_0_1_147_25724 10.0.1.147:25724 id 9975 check inter 3s fall 11
  server 10_0_6_25_16916 10.0.6.25:16916 id 14685 check inter 3s fall 11
  server 10_0_6_25_23336 10.0.6.25:23336 id 14676 check inter 3s fall 11
  server 10_0_6_25_31184 10.0.6.25:31184 id 27565 check inter 3s fall 11 disabled
"""


def check_marathon15_apps(cfg: EdgeConfig) -> None:
    [service] = cfg.services
    assert (service.app_id, service.backend, service.mode) == (
        "/pywebserver",
        "pywebserver_10101",
        "http",
    )
    assert service.vhosts == ("myvhost.com",)
    assert [(s.name, s.host, s.port) for s in service.live_servers] == [
        ("10_0_2_148_1565", "10.0.2.148", 1565)
    ]
    assert after_head(render_haproxy(cfg, SETTINGS)) == BRIDGE_APP_MARATHON15
    assert vhost_map(cfg) == "myvhost.com pywebserver_10101\n"
    assert app_map(cfg) == "/pywebserver pywebserver_10101\n"


def check_zdd_apps(cfg: EdgeConfig) -> None:
    [service] = cfg.services
    assert (service.app_id, service.backend, service.service_port) == (
        "/nginx",
        "nginx_10000",
        10000,
    )
    assert [(s.name, s.host, s.port, s.draining) for s in service.servers] == [
        ("10_0_1_147_25724", "10.0.1.147", 25724, False),
        ("10_0_6_25_16916", "10.0.6.25", 16916, False),
        ("10_0_6_25_23336", "10.0.6.25", 23336, False),
        ("10_0_6_25_31184", "10.0.6.25", 31184, True),
    ]
    assert service.deployment["apps"] == ["/nginx-green", "/nginx-blue"]
    assert after_head(render_haproxy(cfg, SETTINGS)) == ZDD_APP
    assert vhost_map(cfg) == ""
    assert app_map(cfg) == "/nginx nginx_10000\n"


def check_zdd_app_blue(mode: str):  # type: ignore[no-untyped-def]
    def check(cfg: EdgeConfig) -> None:
        [service] = cfg.services
        assert (service.app_id, service.backend, service.mode) == ("/nginx", "nginx_10000", mode)
        # test_get_svnames_from_tasks: 10_0_6_25_16916, 10_0_6_25_31184, 10_0_6_25_23336
        assert sorted(s.name for s in service.live_servers) == [
            "10_0_6_25_16916",
            "10_0_6_25_23336",
            "10_0_6_25_31184",
        ]
        assert {s.host for s in service.servers} == {"10.0.6.25"}
        assert service.deployment["alt_port"] == 10001
        assert service.deployment["colour"] == "green"
        backend = after_head(render_haproxy(cfg, SETTINGS)).split("\nbackend nginx_10000\n")[1]
        assert "  server 10_0_6_25_16916 10.0.6.25:16916 id " in backend

    return check


def check_app_definition(mode: str):  # type: ignore[no-untyped-def]
    def check(cfg: EdgeConfig) -> None:
        [service] = cfg.services
        assert (service.app_id, service.backend, service.mode) == ("/nginx", "nginx_10000", mode)
        assert service.servers == ()
        assert service.deployment == {"group": "nginx", "alt_port": 10001, "apps": ["/nginx"]}
        rendered = after_head(render_haproxy(cfg, SETTINGS))
        assert "nginx_10000" not in rendered
        assert vhost_map(cfg) == app_map(cfg) == ""

    return check


EXPECTED = {
    "marathon15_apps.json": check_marathon15_apps,
    "zdd_apps.json": check_zdd_apps,
    "zdd_app_blue.json": check_zdd_app_blue("http"),
    "zdd_app_blue_marathon1.5.json": check_zdd_app_blue("tcp"),
    "1-nginx.json": check_app_definition("http"),
    "1-nginx-marathon1.5.json": check_app_definition("tcp"),
}


def test_every_payload_has_an_expectation() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_payload_gives_marathon_lbs_backends(name: str) -> None:
    apps = load(name)
    cfg = build(apps, "external")
    EXPECTED[name](cfg)
    assert [n for n in cfg.notices if n.kind != "unsupported-label"] == []


def test_zdd_apps_in_either_order_drain_the_same_old_task() -> None:
    apps = load("zdd_apps.json")
    check_zdd_apps(build(list(reversed(apps))))


def test_payloads_of_another_group_give_nothing() -> None:
    for name in EXPECTED:
        assert build(load(name), "internal").services == ()
