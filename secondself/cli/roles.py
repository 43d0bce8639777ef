"""CLI commands for roles (issue 7) — being written."""

from __future__ import annotations

import click  # noqa: F401

from . import Context, _emit_json, cli  # noqa: F401
