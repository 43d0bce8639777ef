"""The command line: thin commands that build settings, call the library, and print.

Only `click` is imported at module level so `secondself --help` is instant; everything heavy (numpy,
torch, the store) is imported inside the command that needs it. Typed errors from the core become one
`error: ...` line and exit code 2; `ingest` exits 1 when some files failed; Ctrl-C exits 130; any other
exception is a bug in secondself: its traceback and a line that says so, exit code 3. Everything printed goes
through `out`/`styled` (cli/output.py), which escape control characters, so text that came from data (file and
source names, memories, the profile, a model's answer) cannot drive the terminal.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..runtime import Runtime
from .output import escape, escaped_logs, json_text, out, styled  # noqa: F401  (re-exported for the commands)

EXIT_FILES_FAILED = 1
EXIT_ERROR = 2
EXIT_BUG = 3
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


class Context(Runtime):
    """The CLI's runtime: settings from global flags; notices (remote endpoints, re-embedding) go to stderr."""

    def __init__(self, home: str | None, person: str | None, embedder: str | None, store: str | None = None) -> None:
        from ..config import load_settings

        super().__init__(load_settings(home, {"person": person, "embedder": embedder, "store_url": store}),
                         notify=lambda message: out(message, err=True, multiline=True))


def _emit_json(data: Any) -> None:
    click.echo(json_text(data))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="SECONDSELF_HOME", type=click.Path(file_okay=False),
              help="Data directory (default ~/.secondself; env SECONDSELF_HOME).")
@click.option("--person", default=None, help="Whose memory (one database each; default 'me').")
@click.option("--embedder", default=None, help="Override the embedding model: minilm | hashing | a model dir.")
@click.option("--store", default=None, metavar="URL",
              help="Where memories live: a Postgres URL (env SECONDSELF_STORE_URL; default: an SQLite file "
                   "per person).")
@click.version_option(package_name="secondself")
@click.pass_context
def cli(ctx: click.Context, home: str | None, person: str | None, embedder: str | None, store: str | None) -> None:
    """secondself: a local, private memory for one person.

    Pipeline: ingest → build → train → ask/chat (serve later). Nothing leaves this machine
    unless you configure a remote model endpoint, and then it says so.
    """
    ctx.obj = Context(home, person, embedder, store)
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and translate our typed errors into messages and exit codes."""
    import os
    import warnings

    from ..errors import SecondSelfError

    # deprecation notices of the libraries we call (torch, transformers: "`past_key_values` is deprecated"),
    # printed once per generation, are for their developers, not for the person: SECONDSELF_DEBUG keeps them
    if not os.environ.get("SECONDSELF_DEBUG"):
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' own bars (a GGUF's conversion)
    try:
        with escaped_logs():
            cli.main(args=argv, prog_name="secondself", standalone_mode=False)
    except SecondSelfError as e:
        click.echo(f"error: {escape(e, keep_newlines=True)}", err=True)
        sys.exit(EXIT_ERROR)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo("\ninterrupted: the database is consistent; run the command again to finish", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `secondself search x | head`: the reader left; exit as a shell reports SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        sys.exit(EXIT_BROKEN_PIPE)
    except Exception as e:  # anything else is our bug: say so, with what a report needs
        import traceback

        click.echo(escape("".join(traceback.format_exception(e)), keep_newlines=True), err=True, nl=False)
        click.echo(f"error: internal error, a bug in secondself: {escape(f'{type(e).__name__}: {e}')}\n"
                   "Please report it, with the traceback above.", err=True)
        sys.exit(EXIT_BUG)


# Commands live in modules named for what they touch; importing them registers them on `cli`.
from . import bridge as _bridge  # noqa: E402,F401
from . import chat as _chat  # noqa: E402,F401
from . import memory as _memory  # noqa: E402,F401
from . import models as _models  # noqa: E402,F401
from . import prefill as _prefill  # noqa: E402,F401
from . import profile as _profile  # noqa: E402,F401
from . import roles as _roles  # noqa: E402,F401
from . import serve as _serve  # noqa: E402,F401
from . import spaces as _spaces  # noqa: E402,F401
from . import store as _store  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
