"""The platform token: creation, presentation, constant-time check, the 401 middleware."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from playground.client import auth as client_auth
from playground.cluster import auth
from playground.cluster.httpserver import require_token


def test_the_token_lives_in_the_secret_store_only(tmp_path: Path) -> None:
    """ensure_token creates a private token once; load_token reads the same one back."""
    assert auth.load_token(tmp_path) is None
    auth.ensure_token(tmp_path)
    token = auth.load_token(tmp_path)
    assert token and len(token) == 64
    auth.ensure_token(tmp_path)
    assert auth.load_token(tmp_path) == token
    path = tmp_path / "secrets" / auth.TOKEN_SECRET
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_request_presents_its_token_dcos_style() -> None:
    """Only ``Authorization: token=<t>`` presents a token."""
    assert auth.presented(client_auth.headers("abc")) == "abc"
    assert auth.presented({"Authorization": "Token=abc"}) == "abc"
    assert auth.presented({"Authorization": "Bearer abc"}) is None
    assert auth.presented({"Authorization": "token="}) is None
    assert auth.presented({}) is None
    assert client_auth.headers(None) == {}


def test_tokens_match_exactly_and_never_when_missing() -> None:
    """matches is an exact comparison and refuses empty or missing values."""
    assert auth.matches("abc", "abc")
    assert not auth.matches("abd", "abc")
    assert not auth.matches("ab", "abc")
    assert not auth.matches(None, "abc")
    assert not auth.matches("", "")


def test_a_volume_token_is_bound_to_its_volume_and_hides_the_platform_token() -> None:
    """Volume tokens differ per volume and per platform token, and are not the token."""
    a = auth.volume_token("t" * 64, "vol-1")
    assert a == auth.volume_token("t" * 64, "vol-1")
    assert a != auth.volume_token("t" * 64, "vol-2")
    assert a != auth.volume_token("u" * 64, "vol-1")
    assert "t" * 64 not in a


def test_the_middleware_answers_401_without_the_token() -> None:
    """Without the token: 401 with a JSON message; with it, or on an open path: served."""

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def run() -> None:
        app = web.Application(
            middlewares=[require_token("s3cret", "the test service", lambda r: r.path == "/open")]
        )
        app.router.add_get("/open", ok)
        app.router.add_get("/closed", ok)
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/closed")
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == "token"
            body = await r.json()
            assert body["message"].startswith("the test service requires the platform token")
            r = await client.get("/closed", headers={"Authorization": "token=wrong"})
            assert r.status == 401
            r = await client.get("/closed", headers=client_auth.headers("s3cret"))
            assert r.status == 200
            assert (await client.get("/open")).status == 200

    asyncio.run(run())
