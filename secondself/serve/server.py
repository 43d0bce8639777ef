"""Running the app with uvicorn: in the foreground for `secondself serve`, or in a thread for tests/bench."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["ServerThread", "free_port", "run"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _config(app: Any, host: str, port: int):
    import uvicorn

    # no access log: request lines would show queries (private text) in terminals and logs
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=10, server_header=False)


def run(app: Any, host: str, port: int) -> None:
    """Serve until Ctrl-C (uvicorn handles the signal and runs the app's shutdown)."""
    import uvicorn

    uvicorn.Server(_config(app, host, port)).run()


class ServerThread:
    """A uvicorn server in a background thread: `with ServerThread(app) as server: server.url`."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(_config(app, self.host, self.port))
        self.thread = threading.Thread(target=self.server.run, name="secondself-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
