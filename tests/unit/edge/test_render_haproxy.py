"""``render_haproxy``: marathon-lb's default templates, adapted to HAProxy 2.6.

Three kinds of checks: the rendered text against the exact configurations marathon-lb's
own tests expect (``tests/test_marathon_lb.py`` of marathon-lb, everything after its
``base_config``, whose 2.6 adaptation is checked separately); structural checks of the
adaptations; and Debian's HAProxy 2.6 (``haproxy -c``) on renders of several configs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from playground.edge.config import (
    RenderSettings,
    app_map,
    backend_name,
    build,
    generate_certificate,
    render_haproxy,
    server_name,
    vhost_map,
)
from playground.edge.model import EdgeConfig, Server, Service
from tests.support.edge_apps import bridge_app, health_check, host_app, ip_per_task_app, task
from tests.support.reference import MARATHON_LB

MARKER = "  monitor-uri /_haproxy_health_check\n"
CERT = Path("/etc/ssl/cert.pem")


def settings(tmp: Path | None = None, **kw: Any) -> RenderSettings:
    if tmp is None:
        return RenderSettings(state_dir=Path("/var/lib/edge"), cert_path=CERT, **kw)
    return RenderSettings(state_dir=tmp, **kw)


def after_head(config: str) -> str:
    return config.split(MARKER, 1)[1]


def srv(agent: str, ip: str, port: int, **kw: Any) -> Server:
    return Server(
        name=server_name(agent, ip, port),
        task_id=f"{agent}.{port}",
        host=ip,
        port=port,
        agent_host=agent,
        **kw,
    )


def svc(app_id: str, port: int, *servers: Server, **kw: Any) -> Service:
    return Service(
        app_id=app_id,
        port_index=kw.pop("port_index", 0),
        service_port=port,
        backend=backend_name(app_id, port),
        servers=servers,
        groups=("external",),
        **kw,
    )


def cfg(*services: Service) -> EdgeConfig:
    return EdgeConfig(group="external", services=services)


# The health check of marathon-lb's tests (tests/test_marathon_lb.py).
HC = {
    "path": "/",
    "protocol": "HTTP",
    "portIndex": 0,
    "gracePeriodSeconds": 10,
    "intervalSeconds": 2,
    "timeoutSeconds": 10,
    "maxConsecutiveFailures": 10,
}
AGENT1 = srv("agent1", "1.1.1.1", 1024)
AGENT1_1234 = srv("agent1", "192.0.2.1", 1234)

EMPTY_FRONTENDS = """
frontend marathon_http_in
  bind *:80
  mode http

frontend marathon_http_appid_in
  bind *:9091
  mode http

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
"""

HTTP_BACKEND_OPTIONS = """\
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
"""

# Each case: marathon-lb test name, the services its MarathonService objects describe,
# the configuration it expects after base_config (verbatim).
CASES: list[tuple[str, EdgeConfig, str]] = [
    ("test_config_no_apps", cfg(), EMPTY_FRONTENDS),
    (
        "test_config_simple_app",
        cfg(svc("/nginx", 10000, AGENT1, mode="http", health_check=HC)),
        """
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
  timeout check 10s
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check inter 2s fall 11
""",
    ),
    (
        "test_config_healthcheck_command",
        cfg(
            svc(
                "/nginx",
                10000,
                AGENT1,
                mode="tcp",
                health_check={**HC, "protocol": "COMMAND", "portIndex": None},
            )
        ),
        EMPTY_FRONTENDS
        + """
frontend nginx_10000
  bind *:10000
  mode tcp
  use_backend nginx_10000

backend nginx_10000
  balance roundrobin
  mode tcp
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check inter 2s fall 11
""",
    ),
    (
        "test_config_simple_app_vhost",
        cfg(
            svc(
                "/nginx",
                10000,
                AGENT1,
                mode="http",
                health_check=HC,
                vhosts=("test.example.com",),
            )
        ),
        """
frontend marathon_http_in
  bind *:80
  mode http
  acl host_test_example_com_nginx hdr(host) -i test.example.com
  use_backend nginx_10000 if host_test_example_com_nginx

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__nginx hdr(x-marathon-app-id) -i /nginx
  use_backend nginx_10000 if app__nginx

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
  use_backend nginx_10000 if { ssl_fc_sni test.example.com }

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
  timeout check 10s
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check inter 2s fall 11
""",
    ),
    (
        "test_config_simple_app_multiple_vhost",
        cfg(
            svc(
                "/nginx",
                10000,
                AGENT1_1234,
                mode="http",
                health_check=HC,
                vhosts=("test.example.com", "test"),
            )
        ),
        """
frontend marathon_http_in
  bind *:80
  mode http
  acl host_test_example_com_nginx hdr(host) -i test.example.com
  acl host_test_example_com_nginx hdr(host) -i test
  use_backend nginx_10000 if host_test_example_com_nginx

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__nginx hdr(x-marathon-app-id) -i /nginx
  use_backend nginx_10000 if app__nginx

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
  use_backend nginx_10000 if { ssl_fc_sni test.example.com }
  use_backend nginx_10000 if { ssl_fc_sni test }

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
  timeout check 10s
  server agent1_192_0_2_1_1234 192.0.2.1:1234 id 15582 check inter 2s fall 11
""",
    ),
    (
        "test_config_simple_app_vhost_with_path",
        cfg(
            svc(
                "/nginx",
                10000,
                AGENT1,
                mode="http",
                health_check=HC,
                vhosts=("test.example.com",),
                path="/some/path",
            )
        ),
        """
frontend marathon_http_in
  bind *:80
  mode http
  acl host_test_example_com_nginx hdr(host) -i test.example.com
  acl path_nginx_10000 path_beg /some/path
  use_backend nginx_10000 if host_test_example_com_nginx path_nginx_10000

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__nginx hdr(x-marathon-app-id) -i /nginx
  use_backend nginx_10000 if app__nginx

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
  acl path_nginx_10000 path_beg /some/path
  use_backend nginx_10000 if { ssl_fc_sni test.example.com } path_nginx_10000

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
  timeout check 10s
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check inter 2s fall 11
""",
    ),
    (
        "test_config_simple_app_multiple_vhost_with_path",
        cfg(
            svc(
                "/nginx",
                10000,
                AGENT1_1234,
                mode="http",
                health_check=HC,
                vhosts=("test.example.com", "test"),
                path="/some/path",
            )
        ),
        """
frontend marathon_http_in
  bind *:80
  mode http
  acl path_nginx_10000 path_beg /some/path
  acl host_test_example_com_nginx hdr(host) -i test.example.com
  acl host_test_example_com_nginx hdr(host) -i test
  use_backend nginx_10000 if host_test_example_com_nginx path_nginx_10000

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__nginx hdr(x-marathon-app-id) -i /nginx
  use_backend nginx_10000 if app__nginx

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
  acl path_nginx_10000 path_beg /some/path
  use_backend nginx_10000 if { ssl_fc_sni test.example.com } path_nginx_10000
  use_backend nginx_10000 if { ssl_fc_sni test } path_nginx_10000

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
  timeout check 10s
  server agent1_192_0_2_1_1234 192.0.2.1:1234 id 15582 check inter 2s fall 11
""",
    ),
    (
        "test_config_simple_app_balance",
        cfg(svc("/nginx", 10000, AGENT1, mode="http", health_check=HC, balance="leastconn")),
        """
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
  balance leastconn
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 10s
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check inter 2s fall 11
""",
    ),
    (
        "test_config_simple_app_healthcheck_port",
        cfg(
            svc(
                "/nginx",
                10000,
                srv("agent1", "1.1.1.1", 1024, check_port=1024),
                mode="http",
                health_check={**HC, "port": 1024},
            )
        ),
        """
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
  timeout check 10s
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check inter 2s fall 11 port 1024
""",
    ),
    (
        "test_config_simple_app_healthcheck_port_using_another_portindex",
        cfg(
            svc(
                "/nginx",
                10000,
                srv("agent1", "192.0.2.1", 1024, check_port=1025),
                mode="http",
                health_check=HC,
            ),
            svc(
                "/nginx",
                10001,
                srv("agent1", "192.0.2.1", 1025),
                mode="http",
                health_check=HC,
                port_index=1,
            ),
        ),
        """
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

frontend nginx_10001
  bind *:10001
  mode http
  use_backend nginx_10001

backend nginx_10000
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 10s
  server agent1_192_0_2_1_1024 192.0.2.1:1024 id 18199 check inter 2s fall 11 port 1025

backend nginx_10001
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 10s
  server agent1_192_0_2_1_1025 192.0.2.1:1025 id 22260 check inter 2s fall 11
""",
    ),
    (
        "test_config_simple_app_tcp_healthcheck",
        cfg(
            svc(
                "/nginx",
                10000,
                AGENT1,
                mode="http",
                health_check={k: v for k, v in HC.items() if k != "path"} | {"protocol": "TCP"},
                vhosts=("test.example.com",),
            )
        ),
        """
frontend marathon_http_in
  bind *:80
  mode http
  acl host_test_example_com_nginx hdr(host) -i test.example.com
  use_backend nginx_10000 if host_test_example_com_nginx

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__nginx hdr(x-marathon-app-id) -i /nginx
  use_backend nginx_10000 if app__nginx

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
  use_backend nginx_10000 if { ssl_fc_sni test.example.com }

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
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check inter 2s fall 11
""",
    ),
    (
        "test_config_haproxy_group_fallback",
        cfg(
            svc("/nginx", 10000, AGENT1),
            svc("/nginx", 10001, srv("agent1", "1.1.1.1", 1025), port_index=1),
        ),
        EMPTY_FRONTENDS
        + """
frontend nginx_10000
  bind *:10000
  mode tcp
  use_backend nginx_10000

frontend nginx_10001
  bind *:10001
  mode tcp
  use_backend nginx_10001

backend nginx_10000
  balance roundrobin
  mode tcp
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363

backend nginx_10001
  balance roundrobin
  mode tcp
  server agent1_1_1_1_1_1025 1.1.1.1:1025 id 19971
""",
    ),
    (
        "test_config_simple_app_sticky",
        cfg(svc("/nginx", 10000, AGENT1, sticky=True)),
        EMPTY_FRONTENDS
        + """
frontend nginx_10000
  bind *:10000
  mode tcp
  use_backend nginx_10000

backend nginx_10000
  balance roundrobin
  mode tcp
  cookie mesosphere_server_id insert indirect nocache
  server agent1_1_1_1_1_1024 1.1.1.1:1024 id 28363 check cookie d6ad48c81f
""",
    ),
    (
        "test_config_multi_app_multiple_vhost_with_path",
        cfg(
            *(
                svc(
                    f"/nginx{suffix}",
                    10000,
                    srv("agent1", "192.0.2.1", port),
                    mode="http",
                    health_check=HC,
                    vhosts=("test.example.com", "test"),
                    path="/some/path",
                    backend_weight=weight,
                )
                for suffix, port, weight in (
                    ("", 1234, 0),
                    ("1", 2234, 1),
                    ("2", 3234, 2),
                    ("3", 4234, 3),
                )
            )
        ),
        """
frontend marathon_http_in
  bind *:80
  mode http
  acl path_nginx3_10000 path_beg /some/path
  acl host_test_example_com_nginx3 hdr(host) -i test.example.com
  acl host_test_example_com_nginx3 hdr(host) -i test
  use_backend nginx3_10000 if host_test_example_com_nginx3 path_nginx3_10000
  acl path_nginx2_10000 path_beg /some/path
  acl host_test_example_com_nginx2 hdr(host) -i test.example.com
  acl host_test_example_com_nginx2 hdr(host) -i test
  use_backend nginx2_10000 if host_test_example_com_nginx2 path_nginx2_10000
  acl path_nginx1_10000 path_beg /some/path
  acl host_test_example_com_nginx1 hdr(host) -i test.example.com
  acl host_test_example_com_nginx1 hdr(host) -i test
  use_backend nginx1_10000 if host_test_example_com_nginx1 path_nginx1_10000
  acl path_nginx_10000 path_beg /some/path
  acl host_test_example_com_nginx hdr(host) -i test.example.com
  acl host_test_example_com_nginx hdr(host) -i test
  use_backend nginx_10000 if host_test_example_com_nginx path_nginx_10000

frontend marathon_http_appid_in
  bind *:9091
  mode http
  acl app__nginx hdr(x-marathon-app-id) -i /nginx
  use_backend nginx_10000 if app__nginx
  acl app__nginx1 hdr(x-marathon-app-id) -i /nginx1
  use_backend nginx1_10000 if app__nginx1
  acl app__nginx2 hdr(x-marathon-app-id) -i /nginx2
  use_backend nginx2_10000 if app__nginx2
  acl app__nginx3 hdr(x-marathon-app-id) -i /nginx3
  use_backend nginx3_10000 if app__nginx3

frontend marathon_https_in
  bind *:443 ssl crt /etc/ssl/cert.pem
  mode http
  acl path_nginx3_10000 path_beg /some/path
  use_backend nginx3_10000 if { ssl_fc_sni test.example.com } path_nginx3_10000
  use_backend nginx3_10000 if { ssl_fc_sni test } path_nginx3_10000
  acl path_nginx2_10000 path_beg /some/path
  use_backend nginx2_10000 if { ssl_fc_sni test.example.com } path_nginx2_10000
  use_backend nginx2_10000 if { ssl_fc_sni test } path_nginx2_10000
  acl path_nginx1_10000 path_beg /some/path
  use_backend nginx1_10000 if { ssl_fc_sni test.example.com } path_nginx1_10000
  use_backend nginx1_10000 if { ssl_fc_sni test } path_nginx1_10000
  acl path_nginx_10000 path_beg /some/path
  use_backend nginx_10000 if { ssl_fc_sni test.example.com } path_nginx_10000
  use_backend nginx_10000 if { ssl_fc_sni test } path_nginx_10000

frontend nginx_10000
  bind *:10000
  mode http
  use_backend nginx_10000

frontend nginx1_10000
  bind *:10000
  mode http
  use_backend nginx1_10000

frontend nginx2_10000
  bind *:10000
  mode http
  use_backend nginx2_10000

frontend nginx3_10000
  bind *:10000
  mode http
  use_backend nginx3_10000

backend nginx_10000
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 10s
  server agent1_192_0_2_1_1234 192.0.2.1:1234 id 15582 check inter 2s fall 11

backend nginx1_10000
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 10s
  server agent1_192_0_2_1_2234 192.0.2.1:2234 id 20338 check inter 2s fall 11

backend nginx2_10000
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 10s
  server agent1_192_0_2_1_3234 192.0.2.1:3234 id 3933 check inter 2s fall 11

backend nginx3_10000
  balance roundrobin
  mode http
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request add-header X-Forwarded-Proto https if { ssl_fc }
  option  httpchk GET /
  timeout check 10s
  server agent1_192_0_2_1_4234 192.0.2.1:4234 id 31229 check inter 2s fall 11
""",
    ),
]


@pytest.mark.parametrize(("name", "config", "expected"), CASES, ids=[c[0] for c in CASES])
def test_render_matches_marathon_lbs_expected_configuration(
    name: str, config: EdgeConfig, expected: str
) -> None:
    assert after_head(render_haproxy(config, settings())) == expected


def test_build_then_render_matches_marathon_lb_for_an_app_payload() -> None:
    """test_config_simple_app_vhost from an app payload: host agent1, task IP 1.1.1.1
    (IP-per-task, so the server is named host_ip_port as marathon-lb names it)."""
    app = ip_per_task_app(
        "/nginx",
        ((1024, 10000),),
        [task("nginx.1", "agent1", (), ips=("1.1.1.1",), alive=True)],
        {"HAPROXY_0_VHOST": "test.example.com"},
        health_checks=[HC],
    )
    expected = CASES[3][2]
    assert CASES[3][0] == "test_config_simple_app_vhost"
    assert after_head(render_haproxy(build([app]), settings())) == expected


# --------------------------------------------------------------------------- the 2.6 head


def test_head_is_marathon_lbs_adapted_to_haproxy_26(tmp_path: Path) -> None:
    s = settings(tmp_path, maxconn=2000, bind_host="127.0.0.9", stats_port=19090)
    head = render_haproxy(cfg(), s).split("\nfrontend ", 1)[0]
    lines = head.splitlines()
    assert lines[0] == "global"
    assert f"  pidfile {tmp_path / 'haproxy.pid'}" in lines
    assert f"  stats socket {tmp_path / 'haproxy.sock'} expose-fd listeners" in lines
    assert f"  server-state-file {tmp_path / 'haproxy.state'}" in lines
    assert "  maxconn 2000" in lines
    assert "  tune.ssl.default-dh-param 2048" in lines
    assert "  load-server-state-from-file global" in lines
    assert [ln for ln in lines if ln.startswith("  option ")] == [
        "  option            dontlognull",
        "  option            http-server-close",
        "  option            redispatch",
    ]
    stats = head.split("listen stats\n", 1)[1]
    assert stats == (
        "  bind 127.0.0.9:19090\n"
        "  balance\n"
        "  mode http\n"
        "  stats enable\n"
        "  stats uri /haproxy?stats\n"
        "  http-request use-service prometheus-exporter if { path /metrics }\n"
        "  monitor-uri /_haproxy_health_check\n"
    )
    for gone in ("lua", "nbproc", "daemon", "reqadd", "rspadd", "reqirep", "rspirep"):
        assert gone not in head


def test_settings_choose_ports_paths_and_frontends(tmp_path: Path) -> None:
    s = settings(
        tmp_path, bind_host="127.0.0.9", http_port=10080, https_port=10443, appid_port=None
    )
    text = render_haproxy(cfg(), s)
    assert "frontend marathon_http_in\n  bind 127.0.0.9:10080\n  mode http\n" in text
    assert (
        f"frontend marathon_https_in\n  bind 127.0.0.9:10443 ssl crt {tmp_path / 'edge-cert.pem'}\n"
        in text
    )
    assert "marathon_http_appid_in" not in text
    assert "  bind 127.0.0.9:9090\n" in text
    bare = render_haproxy(
        cfg(), settings(tmp_path, bind_http_https=False, prometheus=False, log_target=None)
    )
    assert "marathon_http_in" not in bare and "marathon_https_in" not in bare
    assert "frontend marathon_http_appid_in\n  bind *:9091\n" in bare
    assert "prometheus" not in bare and "/dev/log" not in bare
    assert "  bind 0.0.0.0:9090\n" in bare
    assert s.reserved_ports() == {
        9090: "stats",
        10080: "marathon_http_in",
        10443: "marathon_https_in",
    }


def test_only_healthy_servers_and_services_with_one_are_rendered() -> None:
    config = cfg(
        svc(
            "/web",
            10000,
            srv("10.0.0.1", "10.0.0.1", 31001),
            srv("10.0.0.2", "10.0.0.2", 31002, healthy=False, reason="health checks failing"),
            srv("10.0.0.3", "10.0.0.3", 31003, draining=True),
            srv("10.0.0.4", "10.0.0.4", 31004, draining=True, healthy=False),
            mode="http",
            vhosts=("web.com",),
        ),
        svc(
            "/down",
            10001,
            srv("10.0.0.5", "10.0.0.5", 31005, healthy=False),
            mode="http",
            vhosts=("down.com",),
        ),
    )
    text = render_haproxy(config, settings())
    servers = [ln for ln in text.splitlines() if ln.startswith("  server ")]
    assert [ln.split()[1:3] for ln in servers] == [
        ["10_0_0_1_31001", "10.0.0.1:31001"],
        ["10_0_0_3_31003", "10.0.0.3:31003"],
    ]
    assert servers[1].endswith(" disabled") and not servers[0].endswith(" disabled")
    assert "down" not in text
    assert vhost_map(config) == "web.com web_10000\n"
    assert app_map(config) == "/web web_10000\n"


def test_vhost_map_leaves_path_rules_to_acls_and_lists_every_vhost_once() -> None:
    config = cfg(
        svc("/a", 10000, srv("h", "h", 1), mode="http", vhosts=("a.com", "www.a.com")),
        svc("/a", 10001, srv("h", "h", 2), mode="http", vhosts=("api.a.com",), port_index=1),
        svc("/b", 10002, srv("h", "h", 3), mode="http", vhosts=("a.com",), path="/b"),
        svc("/c", 10003, srv("h", "h", 4), mode="tcp"),
    )
    assert vhost_map(config) == "a.com a_10000\nwww.a.com a_10000\napi.a.com a_10001\n"
    assert app_map(config) == "/a a_10000\n/b b_10002\n"


# --------------------------------------------------------------------------- certificate


def test_generate_certificate_writes_cert_and_key_in_one_private_file(tmp_path: Path) -> None:
    target = tmp_path / "state" / "edge-cert.pem"
    assert generate_certificate(target, hostnames=("edge.local", "127.0.0.9")) == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    data = target.read_bytes()
    assert data.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"-----BEGIN PRIVATE KEY-----" in data
    cert = x509.load_pem_x509_certificate(data)
    key = serialization.load_pem_private_key(data[data.index(b"-----BEGIN PRIVATE KEY") :], None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert.public_key() == key.public_key()
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.9"]
    # replaced whole, never half-written, no temporary file left behind
    generate_certificate(target)
    assert target.read_bytes() != data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["edge-cert.pem"]


def test_generate_certificate_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        generate_certificate(tmp_path / "c.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.pem").stat().st_mode) == 0o600


# --------------------------------------------------------------------------- haproxy -c

HAPROXY = shutil.which("haproxy") or next(
    (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
)
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None, reason="haproxy is not installed (Debian: apt-get install haproxy)"
)


def haproxy_check(text: str, s: RenderSettings, *, zero_warnings: bool = True) -> str:
    assert HAPROXY is not None
    assert s.cert_path is not None and s.server_state_path is not None
    if not s.cert_path.exists():
        generate_certificate(s.cert_path)
    # a state file as HAProxy writes it (version line): without it HAProxy warns
    s.server_state_path.write_text("1\n")
    path = s.state_dir / "haproxy.cfg"
    path.write_text(text)
    cmd = [HAPROXY, "-c", "-f", str(path)] + (["-dW"] if zero_warnings else [])
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    output = cp.stdout + cp.stderr
    assert cp.returncode == 0, f"haproxy -c failed:\n{output}\n--- config ---\n{text}"
    assert "[ALERT]" not in output
    return output


def _apps_of_every_kind() -> list[dict[str, Any]]:
    http_check = [health_check("HTTP")]
    return [
        host_app("/tcp", (10000,), [task("tcp.1", "10.0.0.1", (31000,))]),
        host_app(
            "/shop/web",
            (10001,),
            [
                task("web.1", "10.0.0.1", (31001,), alive=True),
                task("web.2", "10.0.0.2", (31001,), alive=False),
            ],
            {
                "HAPROXY_0_VHOST": "shop.example.com,www.shop.example.com",
                "HAPROXY_0_STICKY": "true",
            },
            health_checks=http_check,
        ),
        host_app(
            "/shop/api",
            (10002,),
            [task("api.1", "10.0.0.2", (31002,), alive=True)],
            {
                "HAPROXY_0_VHOST": "shop.example.com",
                "HAPROXY_0_PATH": "/api",
                "HAPROXY_0_BALANCE": "leastconn",
            },
            health_checks=[health_check("HTTP", path="/health")],
        ),
        bridge_app(
            "/db",
            ((5432, 10003),),
            [task("db.1", "10.0.0.3", (31003,), alive=True)],
            {"HAPROXY_0_BALANCE": "source"},
            health_checks=[health_check("TCP")],
        ),
        ip_per_task_app(
            "/cache",
            ((6379, 10004), (6380, 10005)),
            [task("cache.1", "10.0.0.3", (), ips=("9.0.0.7",), alive=True)],
            {"HAPROXY_0_BACKEND_HEALTHCHECK_PORT_INDEX": "1", "HAPROXY_1_ENABLED": "false"},
            health_checks=[health_check("MESOS_HTTP", port_index=1)],
        ),
        host_app(
            "/fixed",
            (10006,),
            [task("fixed.1", "10.0.0.4", (31006,), alive=True)],
            {"HAPROXY_0_VHOST": "fixed.example.com"},
            health_checks=[health_check("HTTP", port=9999)],
        ),
    ]


@needs_haproxy
def test_haproxy_accepts_an_empty_config(tmp_path: Path) -> None:
    s = settings(tmp_path)
    haproxy_check(render_haproxy(build([]), s), s)
    bare = settings(
        tmp_path, bind_http_https=False, appid_port=None, prometheus=False, log_target=None
    )
    haproxy_check(render_haproxy(build([]), bare), bare)


@needs_haproxy
def test_haproxy_accepts_every_kind_of_service(tmp_path: Path) -> None:
    config = build(_apps_of_every_kind(), edge_host="127.0.0.9")
    assert {s.backend: s.mode for s in config.services} == {
        "tcp_10000": "tcp",
        "shop_web_10001": "http",
        "shop_api_10002": "http",
        "db_10003": "tcp",
        "cache_10004": "http",
        "fixed_10006": "http",
    }
    s = settings(tmp_path, bind_host="127.0.0.9", http_port=10080, https_port=10443)
    text = render_haproxy(config, s)
    for needle in (
        "  balance leastconn\n",
        "  balance source\n",
        "  cookie mesosphere_server_id insert indirect nocache\n",
        "  option  httpchk GET /health\n",
        "acl path_shop_api_10002 path_beg /api",
        " check inter 2s fall 11 port 6380\n",
        " check inter 2s fall 11 port 9999\n",
        "  bind 127.0.0.9:10000\n",
    ):
        assert needle in text
    assert "10.0.0.2:31001" not in text  # unhealthy
    haproxy_check(text, s)


@needs_haproxy
def test_haproxy_accepts_the_zdd_payload_with_a_disabled_server(tmp_path: Path) -> None:
    apps = [
        app
        for name in ("zdd_apps.json", "marathon15_apps.json")
        for app in json.loads((MARATHON_LB / "examples" / name).read_text())["apps"]
    ]
    s = settings(tmp_path)
    text = render_haproxy(build(apps), s)
    assert " disabled\n" in text
    haproxy_check(text, s)


@needs_haproxy
def test_haproxy_accepts_the_marathon_lb_test_configs(tmp_path: Path) -> None:
    """Every CASES configuration but the two that bind one port four times (marathon-lb's
    test does; build() makes that a conflict) passes; tcp sticky only with warnings."""
    s = settings(tmp_path)
    for name, config, _ in CASES:
        if name == "test_config_multi_app_multiple_vhost_with_path":
            continue
        output = haproxy_check(
            render_haproxy(config, s), s, zero_warnings=name != "test_config_simple_app_sticky"
        )
        if name == "test_config_simple_app_sticky":
            assert "needs 'mode http'" in output


@needs_haproxy
def test_haproxy_check_is_real(tmp_path: Path) -> None:
    """The check fails for what HAProxy 2.6 refuses: an http frontend using a tcp backend."""
    s = settings(tmp_path)
    broken = cfg(svc("/web", 10000, srv("h", "10.0.0.1", 1), mode="tcp", vhosts=("web.com",)))
    text = render_haproxy(broken, s).replace(
        "frontend marathon_http_in\n  bind *:80\n  mode http\n",
        "frontend marathon_http_in\n  bind *:80\n  mode http\n  use_backend web_10000\n",
    )
    with pytest.raises(AssertionError, match="incompatible tcp backend"):
        haproxy_check(text, s)
