"""The exception tree of secondself, written out once.

Core code raises these typed errors; the edges (CLI, HTTP, MCP) translate them into messages and exit
codes. Every message says what happened *and what to do next*.

    SecondSelfError                 base of everything we raise on purpose
    ├── ConfigError                 a settings file or flag is wrong (bad TOML, unknown model name, ...)
    ├── StoreError                  the store (SQLite file, Postgres) cannot be opened or reached, is corrupt or newer
    ├── SourceNotFoundError         `forget`/`search --source` named a source that does not exist
    ├── RoleNotFoundError           no role by that name (`secondself role list` shows them)
    ├── RoleForbiddenError          a caller confined to one role asked for another role or a route outside it
    ├── TokenNotFoundError          no API token by that name (`secondself token list` shows them)
    ├── SpaceNotFoundError          no space with that id (`secondself space list` shows them)
    ├── RunNotFoundError            no bridge run with that id (`secondself bridge log` lists them)
    ├── ProfileError                layer 1: no build yet, unknown version or fact, nothing to edit
    ├── BuildError                  a layer-1 build step failed; names the step and cause, `build` resumes
    ├── TrainingError               layer 2: no samples, out of memory, a run that cannot resume, ...
    │   ├── TrainingCancelled       `train --cancel` (or Ctrl-C) stopped a run; its checkpoint is kept
    │   └── AdapterNotFoundError    no adapter version by that name (HTTP 404)
    ├── JobNotFoundError            the server's background jobs hold no job with that id
    ├── PersonNotFoundError         no person by that name on this server (or one just removed)
    ├── ConversationNotFoundError   no logged conversation with that id (`secondself chat --list` shows them)
    ├── JobCancelled                a background job stopped because it was cancelled or the server stopped
    ├── IngestError                 a whole ingest could not run (path missing, ...)
    │   ├── UnreadableFileError     one file could not be read: corrupt, encrypted, unsupported, ...
    │   │                           (the pipeline records it and continues with the rest of the batch)
    │   ├── UploadTooLarge          a file sent to the server is larger than its upload limit (HTTP 413)
    │   └── SourceConflictError     an upload named a source that is one of the person's folders (HTTP 409)
    ├── Busy                        the server's model is at capacity and its waiting line is full (HTTP 503)
    ├── RateLimited                 a client sent more requests than its rate limit allows (HTTP 429)
    └── BackendError                a model backend failed
        ├── ModelNotAvailableError  model files / packages are missing; the message names the install step
        │   ├── ModelIntegrityError a model file's SHA-256 is not the pinned one; it is not used
        │   ├── ModelFileError      a model file is missing, unreadable or not a valid GGUF model
        │   └── AdapterMismatchError a LoRA adapter file was made for another base model
        ├── EmbeddingMismatchError  vectors of different models/dimensions would be mixed
        ├── StructuredOutputError   a model did not produce valid structured output after N attempts
        ├── ContextOverflowError    prompt + requested reply exceed the chat model's context window
        └── EndpointError           an HTTP model endpoint is unreachable, rejects the key, or fails
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "SecondSelfError",
    "ConfigError",
    "StoreError",
    "SourceNotFoundError",
    "RoleNotFoundError",
    "RoleForbiddenError",
    "TokenNotFoundError",
    "SpaceNotFoundError",
    "RunNotFoundError",
    "IngestError",
    "ProfileError",
    "BuildError",
    "TrainingError",
    "TrainingCancelled",
    "AdapterNotFoundError",
    "JobNotFoundError",
    "PersonNotFoundError",
    "ConversationNotFoundError",
    "JobCancelled",
    "UnreadableFileError",
    "UploadTooLarge",
    "SourceConflictError",
    "Busy",
    "RateLimited",
    "BackendError",
    "ModelNotAvailableError",
    "ModelIntegrityError",
    "ModelFileError",
    "AdapterMismatchError",
    "EmbeddingMismatchError",
    "StructuredOutputError",
    "ContextOverflowError",
    "EndpointError",
]


class SecondSelfError(Exception):
    """Base class: anything secondself raises deliberately. `str(err)` is a user-facing message."""


class ConfigError(SecondSelfError):
    pass


class StoreError(SecondSelfError):
    pass


class SourceNotFoundError(SecondSelfError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no source named {name!r}; run `secondself sources` to list them")
        self.name = name


class RoleNotFoundError(SecondSelfError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no role named {name!r}; `secondself role list` shows them")
        self.name = name


class RoleForbiddenError(SecondSelfError):
    """A token bound to one role asked for something outside it (another role, or a route that is not
    confined to roles). The HTTP API answers 403."""


class SpaceNotFoundError(SecondSelfError):
    def __init__(self, space_id: int) -> None:
        super().__init__(f"no space with id {space_id}; `secondself space list` shows them")


class RunNotFoundError(SecondSelfError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"no bridge run with id {run_id}; `secondself bridge log` lists them")


class TokenNotFoundError(SecondSelfError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no token named {name!r} (see `secondself token list`)")
        self.name = name


class IngestError(SecondSelfError):
    pass


class ProfileError(SecondSelfError):
    pass


class TrainingError(SecondSelfError):
    pass


class TrainingCancelled(TrainingError):
    pass


class AdapterNotFoundError(TrainingError):
    """No adapter version by that name (a TrainingError, as before; HTTP 404)."""


class BuildError(SecondSelfError):
    """A build step failed. `step` names it; outputs of earlier items stay stored, so `build` resumes."""

    def __init__(self, step: str, cause: BaseException | str) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"layer-1 build failed at step '{step}': {cause}. What was finished is kept; fix the "
                         "cause (or choose another teacher model) and run `secondself build` again to resume.")


class JobNotFoundError(SecondSelfError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job with id {job_id}; list the jobs to see which exist")
        self.job_id = job_id


class PersonNotFoundError(SecondSelfError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no person named {name!r} on this server")
        self.name = name


class ConversationNotFoundError(SecondSelfError):
    def __init__(self, conversation_id: int) -> None:
        super().__init__(f"no conversation {conversation_id}; `secondself chat --list` shows them")
        self.conversation_id = conversation_id


class JobCancelled(SecondSelfError):
    """Raised inside a job (from its progress callback) once it was asked to stop; what it finished is kept."""


class UnreadableFileError(IngestError):
    """One file could not be turned into text.

    `reason` is short and human ("encrypted PDF", "not a zip archive (corrupt .docx?)");
    `kind` is one of: "corrupt", "encrypted", "unsupported", "empty", "too_large", "io".
    Unsupported and empty files are skipped, not failures; the others make `ingest` exit non-zero.
    """

    def __init__(self, path: str | Path, reason: str, kind: str = "corrupt") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.kind = kind


class UploadTooLarge(IngestError):
    """The client sent more bytes than the server accepts for one file."""


class SourceConflictError(IngestError):
    """An upload named a source that an ingested folder owns; storing the upload there would re-point the
    source away from the folder (HTTP 409)."""


class Busy(SecondSelfError):
    """The model is at capacity and its waiting line is full (HTTP 503 with Retry-After: `retry_after` s)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(SecondSelfError):
    """This client sent more requests than its rate limit allows (HTTP 429 with Retry-After)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendError(SecondSelfError):
    pass


class ModelNotAvailableError(BackendError):
    pass


class ModelIntegrityError(ModelNotAvailableError):
    """A model file does not have the SHA-256 pinned for it (corrupt, truncated or replaced); it is not used.
    `path`, `expected` and `actual` (full hex digests) are kept; the message names the file and the fix."""

    def __init__(self, path: str | Path, expected: str, actual: str, fix: str) -> None:
        super().__init__(f"{path} is corrupt or not the pinned model: its SHA-256 starts {actual[:12]}, expected "
                         f"{expected[:12]}. It was not used. {fix}")
        self.path, self.expected, self.actual = str(path), expected, actual


class ModelFileError(ModelNotAvailableError):
    """A model (or adapter) file is missing, unreadable or not a valid GGUF. `path` names it; `reason` says
    what is wrong with it; the message adds what to do."""

    def __init__(self, path: str | Path, reason: str, fix: str) -> None:
        super().__init__(f"{path}: {reason}. {fix}")
        self.path, self.reason = str(path), reason


class AdapterMismatchError(ModelNotAvailableError):
    """A LoRA adapter file does not fit the base model it was given to (another architecture or other
    tensor shapes). `path` names the adapter, `base` the model; the adapter is not loaded."""

    def __init__(self, path: str | Path, base: str | Path, reason: str) -> None:
        super().__init__(f"the LoRA adapter {path} was made for another base model than {base} ({reason}); "
                         "it was not loaded. Train (or convert) the adapter on this base model, or choose "
                         "the base it was trained on.")
        self.path, self.base, self.reason = str(path), str(base), reason


class EmbeddingMismatchError(BackendError):
    pass


class StructuredOutputError(BackendError):
    """The model's output never validated. `attempts` holds (raw output, error) for each try."""

    def __init__(self, what: str, attempts: list[tuple[str, str]]) -> None:
        last = attempts[-1][1] if attempts else "no output"
        super().__init__(f"the model could not produce valid {what} after {len(attempts)} attempt(s) "
                         f"(last error: {last}). A stronger teacher model usually fixes this: see "
                         "`secondself models`.")
        self.attempts = attempts


class ContextOverflowError(BackendError):
    """The prompt plus `max_tokens` do not fit the model's context window; the message says what to shorten."""


class EndpointError(BackendError):
    """An HTTP endpoint failed. The message names the URL and the next step, never the API key."""
