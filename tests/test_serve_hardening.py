"""What outside probes of the server found (issue 14, findings 7-11 and 17), one test each: inputs that gave a
500, a locality check that was a string prefix, an upload that re-pointed a folder source, health and shedding
that waited behind a loading model, a body read before the token was checked, and two shapes for one search."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx
import pytest
from serving import running_server

from secondself.backends.chat import FakeChatModel

REPLY = "I moved to Lisbon in July [1]."
NOTES = {"2025-07-02-move.md": "Today I moved to Lisbon. The flat in Arroios is small but bright.",
         "2025-03-01-bread.md": "Baked sourdough again; the starter is finally lively."}
HANG_GUARD = 30  # seconds; only so a regression fails instead of hanging, never a timing assertion


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def srv(tmp_path: Path):
    with running_server(tmp_path / "home", persona=f"fake:{REPLY}", jobs=False, mcp=False) as s:
        s.ingest_text(NOTES)
        yield s


# -- 7: two inputs that gave a 500 --------------------------------------------------------------------
def test_a_null_byte_in_a_static_name_is_a_404_not_a_500(srv):
    for name in ("%00", "a%00.js", "app.js%00"):
        r = httpx.get(f"{srv.url}/static/{name}")
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    assert httpx.get(srv.url + "/static/app.js").status_code == 200


# -- 8: "is this host this machine?" ------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://127.evil.example/v1", "http://127.0.0.1.evil.example:8000/v1",
                                 "http://localhost.evil.example/v1", "http://evil.example/v1", "http://127.1/v1",
                                 "http://0x7f000001/v1", "http://2130706433/v1", "http://[::ffff:8.8.8.8]/v1",
                                 "http://evil.example\\@127.0.0.1/v1", "not a url", ""])
def test_names_that_only_look_local_are_remote(url):
    from secondself.backends.openai_compat import is_remote_url
    from secondself.backends.registry import parse_spec

    assert is_remote_url(url)
    if url.startswith("http"):
        assert parse_spec(f"openai:m@{url}").remote


@pytest.mark.parametrize("url", ["http://localhost:11434/v1", "http://LOCALHOST/v1", "http://127.0.0.1:8000/v1",
                                 "http://127.255.0.9/v1", "http://[::1]:8000/v1", "https://[::ffff:127.0.0.1]/v1"])
def test_loopback_addresses_and_localhost_are_local(url):
    from secondself.backends.openai_compat import is_remote_url

    assert not is_remote_url(url)


def test_a_write_token_cannot_add_a_participant_that_only_looks_local(srv):
    writer = srv.token("write")
    for url in ("http://127.evil.example/v1", "http://evil.example/v1"):
        r = httpx.post(srv.url + "/api/spaces", headers=bearer(writer),
                       json={"topic": "dinner", "participants": ["self", url]})
        assert r.status_code == 403, r.text


def test_a_chat_token_cannot_send_to_an_expert_that_only_looks_local(srv):
    chat = srv.token("chat")
    r = httpx.post(srv.url + "/api/bridge/ask", headers=bearer(chat), timeout=HANG_GUARD,
                   json={"request": "Where should I eat tonight?", "expert": "http://127.evil.example/v1"})
    assert r.status_code == 403, r.text
    assert "admin" in r.json()["error"]["message"]


# -- 11: the token before the body; Host; unknown tokens ----------------------------------------------
def test_revoking_a_token_that_does_not_exist_is_404(srv):
    admin = srv.token("admin", name="boss")
    r = httpx.delete(srv.url + "/api/tokens/nobody", headers=bearer(admin))
    assert r.status_code == 404, r.text
    assert "nobody" in r.json()["error"]["message"]
    assert httpx.delete(srv.url + "/api/tokens/boss", headers=bearer(admin)).status_code == 200
