"""Answers in OpenAI's error shape, which its client libraries parse into typed exceptions, and the one table
that turns our typed errors into HTTP statuses. Errors never carry tracebacks or secrets."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from ..errors import (
    AdapterNotFoundError,
    BackendError,
    Busy,
    ConfigError,
    ContextOverflowError,
    EndpointError,
    IngestError,
    ModelNotAvailableError,
    ProfileError,
    RateLimited,
    RoleForbiddenError,
    RoleNotFoundError,
    SecondSelfError,
    SourceConflictError,
    SourceNotFoundError,
    StoreError,
    TokenNotFoundError,
    TrainingError,
    UploadTooLarge,
)

__all__ = ["api_error", "error_response", "accepted"]


def api_error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
              param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in OpenAI's shape, which its client libraries parse into typed exceptions."""
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status, headers=headers)


# typed error → (HTTP status, OpenAI error type, code); first match wins, so subclasses come first
_ERRORS: list[tuple[type[BaseException], int, str, str]] = [
    (UploadTooLarge, 413, "invalid_request_error", "file_too_large"),
    (SourceConflictError, 409, "invalid_request_error", "source_conflict"),
    (SourceNotFoundError, 404, "invalid_request_error", "source_not_found"),
    (RoleNotFoundError, 404, "invalid_request_error", "role_not_found"),
    (TokenNotFoundError, 404, "invalid_request_error", "token_not_found"),
    (RoleForbiddenError, 403, "permission_error", "role_forbidden"),
    (ProfileError, 404, "invalid_request_error", "profile_not_found"),
    (ContextOverflowError, 400, "invalid_request_error", "context_length_exceeded"),
    (ModelNotAvailableError, 503, "server_error", "model_not_available"),
    (EndpointError, 502, "server_error", "upstream_error"),
    (BackendError, 502, "server_error", "model_error"),
    (AdapterNotFoundError, 404, "invalid_request_error", "adapter_not_found"),
    (TrainingError, 409, "invalid_request_error", "training_error"),
    (IngestError, 400, "invalid_request_error", "ingest_error"),
    (StoreError, 500, "server_error", "store_error"),
    (ConfigError, 400, "invalid_request_error", "invalid_value"),
]


def error_response(e: SecondSelfError) -> JSONResponse:
    if isinstance(e, Busy):
        return api_error(503, str(e), "server_error", "model_busy", headers={"Retry-After": str(int(e.retry_after))})
    if isinstance(e, RateLimited):
        return api_error(429, str(e), "rate_limit_error", "rate_limit_exceeded",
                         headers={"Retry-After": str(max(1, int(e.retry_after + 0.999)))})
    for cls, status, type_, code in _ERRORS:
        if isinstance(e, cls):
            return api_error(status, str(e), type_, code)
    name = type(e).__name__
    if name.endswith("NotFoundError"):
        return api_error(404, str(e), "invalid_request_error", "not_found")
    return api_error(400, str(e), "invalid_request_error", name)


def accepted(job: dict) -> JSONResponse:
    """202 with the background job that will do the work."""
    return JSONResponse({"job": job}, status_code=202)
