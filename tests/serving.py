"""A real secondself server for tests: a temp home, its own runtime, uvicorn on a free loopback port.

    with running_server(tmp_path, persona="fake:I moved to Lisbon [1].") as srv:
        srv.url, srv.token("chat"), srv.runtime, srv.ingest_text({"a.md": "..."})
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Server:
    url: str
    runtime: Any
    app: Any
    home: Path

    @property
    def state(self):
        return self.app.state.secondself

    def token(self, *scopes: str, name: str | None = None) -> str:
        from secondself.serve import tokens

        with self.runtime.lock:
            n = len(tokens.list_tokens(self.runtime.store, include_revoked=True)) + 1
            return tokens.create(self.runtime.store, name or f"t{n}", list(scopes))[1]

    def ingest_text(self, files: dict[str, str], source: str = "notes") -> None:
        """Write files into home/corpus/<source> and ingest them synchronously."""
        from secondself.ingest.pipeline import ingest

        folder = self.home / "corpus" / source
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        rt = self.runtime
        with rt.lock:
            ingest(rt.store, rt.embedder, [folder], source_name=source, person_name=rt.settings.person_name)


@contextmanager
def running_server(home: Path, persona: str = "fake", embedder: str = "hashing", person_name: str = "Maya",
                   teacher: str = "fake", person: str = "me", **options: Any) -> Iterator[Server]:
    from secondself.config import load_settings
    from secondself.runtime import Runtime
    from secondself.serve.app import ServeOptions, create_app
    from secondself.serve.server import ServerThread

    settings = load_settings(home, {"embedder": embedder, "persona_model": persona, "teacher_model": teacher,
                                    "person_name": person_name, "person": person})
    runtime = Runtime(settings)
    options.setdefault("port", 0)
    app = create_app(runtime, ServeOptions(**options))
    with ServerThread(app, port=None) as thread:
        yield Server(thread.url, runtime, app, Path(home))
    runtime.close()
