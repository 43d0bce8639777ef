"""A tiny OpenAI-compatible server for tests and demos (standard library only, loopback only).

It speaks the wire format of `POST /v1/chat/completions` (streaming SSE and plain JSON) and
`GET /v1/models`, answers with scripted replies, and records every request, so the real HTTP backend and
the CLI can be exercised end to end without a network:

    with FakeOpenAIServer(["I live in Lisbon [1]."]) as server:
        ...  # persona_model = f"openai:fake-model@{server.base_url}"
        server.requests[0]["messages"]

`api_key`, when set, is required as a Bearer token (401 otherwise); `fail_first` makes the first N
requests answer 503, to exercise retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeOpenAIServer"]


class FakeOpenAIServer:
    def __init__(self, replies: Sequence[str] = (), model: str = "fake-model", api_key: str | None = None,
                 fail_first: int = 0) -> None:
        self.replies = list(replies)
        self.model = model
        self.api_key = api_key
        self.fail_first = fail_first
        self.requests: list[dict] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, body: dict) -> str:
        if self.replies:
            return self.replies.pop(0)
        last = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        return f"fake: {last[-60:]}"

    # -- what a subclass (fake_vllm_server.py) changes -------------------------------------------------
    def _model_cards(self) -> list[dict]:
        return [{"id": self.model, "object": "model"}]

    def _route(self, path: str, body: dict) -> tuple[int, dict | str]:
        """A POST to a route other than chat completions: (status, JSON body or plain text)."""
        return 404, {"error": {"message": "not found"}}

    def _refuse(self, body: dict) -> tuple[int, dict] | None:
        """An error answer for this chat request (e.g. an unknown model), None to answer it."""
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _json(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._json(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if not self._authorized():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": server._model_cards()})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    code, payload = server._route(self.path.rstrip("/"), body)
                    if isinstance(payload, str):  # vLLM answers its adapter routes with plain text
                        data = payload.encode()
                        self.send_response(code)
                        self.send_header("Content-Type", "text/plain")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                    else:
                        self._json(code, payload)
                    return
                server.requests.append(body)
                if server.fail_first > 0:
                    server.fail_first -= 1
                    self._json(503, {"error": {"message": "overloaded, try again"}})
                    return
                if (refused := server._refuse(body)) is not None:
                    self._json(*refused)
                    return
                reply = server._next_reply(body)
                if not body.get("stream"):
                    self._json(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": server.model,
                                     "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": reply}}]})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = reply.split(" ")
                for i, word in enumerate(words):
                    delta = {"content": word + (" " if i < len(words) - 1 else "")}
                    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": server.model,
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                end = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": server.model,
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())

        return Handler
