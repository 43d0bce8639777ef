"""What one running secondself process holds: settings, one store, one embedder, and the models it loaded.

The CLI builds a `Runtime` per invocation and the server one per process; both then call the same
functions here to choose models (persona, personal adapter, teacher, training base, judge), so a command and
its HTTP twin cannot drift apart. Nothing is opened until first used, so `secondself --help` stays instant.

Notices that a user must see before data leaves the machine ("the persona model is remote...") go through
`notify`; the CLI prints them on stderr, the server logs them at startup and returns them in `/health`.

A Runtime stays at the edges (CLI, server, job worker). Library code never takes one by name: it declares the
narrow services it uses (`bridge.BridgeServices`, `spaces.run.SpaceServices`, `prefill.PersonMemory`), typed,
and the edges pass their Runtime, which provides them (tests/test_runtime_edges.py checks both).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .progress import OnProgress

if TYPE_CHECKING:
    from .backends.cache import ModelCache
    from .backends.chat import ChatModel
    from .backends.embedders import Embedder
    from .memory.search import Searcher
    from .persona import Persona
    from .roles import Role
    from .store import Store

__all__ = ["Runtime", "Notify"]

Notify = Callable[[str], None]


class Runtime:
    """Lazily opened services for one person. Loaded chat models are cached by spec (loading the embedded
    model takes seconds); `lock` guards the shared store connection when several threads use it."""

    def __init__(self, settings: Settings, notify: Notify | None = None, shared: ModelCache | None = None) -> None:
        self.settings = settings
        self.notify: Notify = notify or (lambda message: None)
        self.shared = shared  # models (and the embedder) loaded once for several Runtimes: serve --all-persons
        self._store = None
        self._embedder = None
        self._models: dict[str, Any] = {}
        self._searcher = None
        self.lock = threading.RLock()

    @classmethod
    def from_options(cls, home: str | None = None, overrides: dict[str, Any] | None = None,
                     notify: Notify | None = None) -> Runtime:
        return cls(load_settings(home, overrides or {}), notify)

    # -- layer 0 ------------------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            from .store import open_store

            self._store = open_store(self.settings)
        return self._store

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from .backends.embedders import make_embedder

            def load():
                return make_embedder(self.settings.embedder, self.settings.embed_batch)
            key = f"embedder:{self.settings.embedder}:{self.settings.embed_batch}"
            self._embedder = self.shared.get(key, load) if self.shared is not None else load()
        return self._embedder

    @property
    def searcher(self) -> Searcher:
        if self._searcher is None:
            from .memory.search import Searcher

            self._searcher = Searcher(self.store, self.embedder)
        return self._searcher

    @property
    def person(self) -> str:
        """The person's display name (their name if configured, else the person id)."""
        return self.settings.person_name or self.settings.person

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def reembed_if_stale(self, on_progress: OnProgress | None = None) -> int:
        """After an embedding-model switch, embed what the configured model lacks; returns how many."""
        from .ingest.pipeline import ensure_embeddings

        missing = self.store.count_missing_vectors(self.embedder.name)
        if missing:
            self.notify(f"embedding {missing} chunk(s) with {self.embedder.name} (model changed or new)…")
            ensure_embeddings(self.store, self.embedder, on_progress=on_progress)
        return missing

    # -- layers 1-2: what `build`/`train` and the server's jobs share ---------------------------------
    def build_profile(self, teacher_spec: str | None = None, *, full: bool = False, seed: int = 0,
                      topics: int | None = None, teacher_facts: bool = False, slots: bool | None = None,
                      prose: bool | None = None, about: str | None = None, on_progress: OnProgress | None = None):
        """Build layer 1 the one way `secondself build` and the build job do; returns (report, options, teacher).

        The teacher is resolved first (a bad spec fails before anything is written); `about` (the person's
        own text) is stored when given, else the stored one is used; what the embedder lacks is embedded.
        Defaults from what the teacher can do (`ModelSpec.layer1`, measured per catalog model): it fills the
        short slots unless it writes nothing well (the embedded 135M), and writes the biography and status
        too when it writes prose (Qwen2.5-Coder-1.5B, endpoints, other local models).
        `on_progress` gets Progress values for "embed" and the build's stages."""
        from .memory.build import BuildOptions, build
        from .memory.versions import overrides, set_override

        teacher, parsed = self.teacher(teacher_spec)
        if about is not None:
            set_override(self.store, "about", "text", about)
        about_text = overrides(self.store).get("about", {}).get("text", "")
        self.reembed_if_stale(on_progress=on_progress)
        options = BuildOptions(seed=seed, full=full, k=topics, teacher_facts=teacher_facts,
                               slots=slots if slots is not None else parsed.layer1 != "templates",
                               prose=prose if prose is not None else parsed.layer1 == "prose")
        report = build(self.store, self.embedder.name, teacher, self.person, options, about=about_text,
                       on_progress=on_progress)
        return report, options, teacher

    def train_model(self, base_spec: str | None = None, *, steps: int | None = None, epochs: float | None = None,
                    rank: int | None = None, resume: bool = False, dpo: bool = False, full: bool = False,
                    on_progress: OnProgress | None = None):
        """Train (or resume) the personal model the one way `secondself train` and the train job do; returns
        the registered, selected adapter (AdapterInfo). `dpo`: add the DPO stage. `full`: train from scratch
        rather than continue the current adapter on what changed. `on_progress` as in `run_training`."""
        from .train.pipeline import TrainOptions, resume_settings, run_training

        if resume:  # the run's own recorded settings and base, never today's defaults
            recorded = resume_settings(self.settings.person_dir, base=base_spec, rank=rank, steps=steps,
                                       epochs=epochs, dpo=dpo or None)
            options = recorded.options
            if recorded.base_dir is not None and recorded.base_dir.is_dir():
                base_dir, base_name = recorded.base_dir, recorded.base_name or options.base
            else:
                base_dir, base_name = self.train_base(options.base)
        else:
            options = TrainOptions(base=base_spec or "embedded", rank=rank, steps=steps, dpo=dpo, full=full,
                                   **({"epochs": epochs} if epochs else {}))
            base_dir, base_name = self.train_base(base_spec)
        judge = self.judge()
        from .train import adapters as registry

        previous = registry.current(self.store, self.settings.person_dir)
        info = run_training(self.store, self.settings.person_dir, self.person, base_dir, base_name, options,
                            resume=resume, make_model=self.adapter_models(base_dir), judge=judge,
                            retrieve=lambda q: [h.chunk.text for h in self.searcher.search(q, k=3)],
                            on_progress=on_progress)
        info = self._gguf_ready(info, base_spec or (None if resume else "embedded"))
        if self.settings.personal_endpoint:
            self._register_on_endpoint(info, previous)
        return info

    def _register_on_endpoint(self, info, previous) -> None:
        """A new version trained: registered with the `personal_endpoint` server, the one it replaces
        unregistered. A failure leaves the trained adapter as it is (chat registers it on first use) and says so."""
        from .backends.vllm_lora import register_version
        from .errors import EndpointError

        try:
            name = register_version(self.settings.personal_endpoint, self.settings.person, info, previous,
                                    self.settings.api_key_env)
        except EndpointError as e:
            self.notify(f"note: adapter {info.version} was not registered with the personal endpoint: {e}")
        else:
            self.notify(f"adapter {info.version} registered as {name!r} with {self.settings.personal_endpoint}")

    def _gguf_ready(self, info, base_spec: str | None):
        """Record the base's GGUF with a new adapter (when its spec names one) and convert the adapter for
        llama.cpp now; a resumed run without a spec finds its base's GGUF from the checkpoint's record."""
        from .backends.registry import parse_spec
        from .errors import SecondSelfError
        from .train import adapters as registry

        gguf = None
        if base_spec is not None:
            try:
                parsed = parse_spec(base_spec)
                if parsed.source in ("catalog", "ollama", "gguf"):
                    gguf = parsed.local_path(self.settings.models_dir)  # verified by train_base already
            except SecondSelfError:
                gguf = None
        return registry.prepare_gguf(info, self.settings.models_dir, gguf)

    # -- models -------------------------------------------------------------------------------------
    def chat_model(self, spec: str, purpose: str = "persona") -> ChatModel:
        """The model for a spec ('personal' = base + the selected adapter), loaded once per process."""
        from .backends.registry import make_chat_model, parse_spec

        if spec == "personal":
            return self.personal_model()
        parsed = parse_spec(spec)
        if spec not in self._models:
            if parsed.remote:
                self.notify(_REMOTE[purpose].format(url=parsed.base_url))
            def load():
                return make_chat_model(spec, self.settings.models_dir, self.settings.api_key_env)
            self._models[spec] = self.shared.get(spec, load) if self.shared is not None else load()
        return self._models[spec]

    def use_model(self, spec: str, model) -> None:
        """Answer `spec` with this model object (tests and demos inject fakes through the real lookup)."""
        self._models[spec] = model

    def personal_model(self):
        """The base model with the selected adapter (`secondself model use`); rebuilt when that changes (the
        previous one is closed). llama.cpp on the base's GGUF with the adapter applied per request where the
        base has a GGUF, else transformers + peft (train/adapters.py:personal_chat_model)."""
        from .errors import TrainingError
        from .train import adapters as registry

        info = registry.current(self.store, self.settings.person_dir)
        if info is None:
            raise TrainingError("no personal model yet: run `secondself train` (or choose one with `model use`)")
        key = f"personal:{info.path}"
        if key not in self._models:
            for old in [k for k in self._models if k.startswith("personal:")]:
                close = getattr(self._models.pop(old, None), "close", None)
                if close is not None:  # a llama.cpp engine holds its memory until closed
                    close()
            self._models[key] = self._personal_chat_model(info)
        return self._models[key]

    def _personal_chat_model(self, info):
        """On the vLLM server of `personal_endpoint` when one is set (backends/vllm_lora.py), else here."""
        from .train import adapters as registry

        if not self.settings.personal_endpoint:
            return registry.personal_chat_model(info, self.settings.models_dir)
        from .backends.openai_compat import is_remote_url
        from .backends.vllm_lora import endpoint_model

        model = endpoint_model(self.settings.personal_endpoint, self.settings.person, info, self.settings.api_key_env)
        if is_remote_url(model.endpoint.base_url):
            self.notify(_REMOTE["personal"].format(url=model.endpoint.base_url))
        return model

    def layer1(self, scope=None):
        """Layer 1 condensed per question (a callable), once a profile has been built; "" before that.
        With a `scope` (a role's), only what was derived from memories inside it (memory/scope.py)."""
        from .memory.context import persona_context
        from .memory.scope import scoped_profile
        from .memory.versions import current_version, load_version

        if current_version(self.store) is None:
            return ""
        profile = load_version(self.store)
        if scope is not None:
            profile = scoped_profile(profile, scope, self.store)
        return lambda question: persona_context(profile, question)

    def role(self, name: str) -> Role:
        """The Role named `name` (RoleNotFoundError otherwise)."""
        from .roles import get_role

        return get_role(self.store, name)

    def model_spec(self, role: Role | None = None) -> str:
        """The model a persona answers with: the role's own, else the configured persona model."""
        return (role.model if role is not None else None) or self.settings.persona_model

    def persona(self, spec: str | None = None, k: int | None = None, role: Role | None = None) -> Persona:
        """A Persona answering with `spec` (default: the role's model, else the configured persona model).

        With a `role` it follows the role's instructions and can read only the role's scope: retrieval goes
        through a ScopedSearcher and layer 1 is the scoped view, so the model never sees what it hides."""
        from .memory.scope import ScopedSearcher
        from .persona import Persona, PersonaConfig

        spec = spec or self.model_spec(role)
        model = self.chat_model(spec)
        self.reembed_if_stale()
        config = PersonaConfig(k=k) if k else PersonaConfig()
        if role is None:
            return Persona(model, self.searcher, name=self.settings.person_name, config=config, profile=self.layer1())
        return Persona(model, ScopedSearcher(self.searcher, role.scope), name=self.settings.person_name,
                       config=config, profile=self.layer1(role.scope), instructions=role.instructions)

    def teacher(self, spec: str | None = None):
        """The model that builds layers 1-2, and its parsed spec."""
        from .backends.registry import parse_spec

        spec = spec or self.settings.teacher_model
        return self.chat_model(spec, purpose="teacher"), parse_spec(spec)

    def judge(self):
        """The teacher as a rubric judge when it is stronger than the embedded model; None otherwise (the
        135M model cannot grade)."""
        from .backends.registry import parse_spec

        if parse_spec(self.settings.teacher_model).kind not in ("openai", "local"):
            return None
        return self.chat_model(self.settings.teacher_model, purpose="judge")

    def train_base(self, spec: str | None = None) -> tuple[Path, str]:
        """The base model's plain checkpoint directory (the embedded GGUF is converted once) and its name."""
        from .backends.registry import parse_spec, transformers_model
        from .errors import ConfigError

        spec = spec or "embedded"
        parsed = parse_spec(spec)
        if parsed.kind not in ("embedded", "local"):
            raise ConfigError(f"cannot fine-tune {spec!r}: training needs local weights (a catalog model, "
                              "ollama:NAME, a local model directory or .gguf file)")
        model = transformers_model(parsed, self.settings.models_dir)
        return model._checkpoint(), model.name

    def adapter_models(self, base_dir: Path) -> Callable[[Path | None], Any]:
        """make_model(adapter) for training and evaluation: the base with or without an adapter, cached
        (llama.cpp where the base has a GGUF: train/adapters.py:run_models)."""
        from .train.adapters import run_models

        return run_models(base_dir, self.settings.models_dir)


_REMOTE = {
    "personal": "note: the personal model runs on {url} (your adapter is registered there); your question and the "
                "memories retrieved for it are sent there",
    "persona": "note: the persona model is remote ({url}); your question and the memories retrieved for it "
               "are sent there",
    "teacher": "note: the teacher model is remote ({url}); excerpts of your memories are sent there to name "
               "topics and write the biography",
    "judge": "note: the teacher model is remote ({url}); held-out questions, reference answers and both "
             "models' answers are sent there to be graded",
    "expert": "note: the bridge's expert model is remote ({url}); requests enhanced with the personal details "
              "listed for each, and your critiques of its answers, are sent there",
}
