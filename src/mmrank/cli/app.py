"""The Typer apps every command module attaches to (kept apart so modules never import each other)."""

from contextlib import contextmanager
from typing import Iterator

import typer

from mmrank.errors import MmrankError

app = typer.Typer(
    name="mmrank",
    help="Multimodal rankers and an integrity audit that really runs.\n\nExample: mmrank demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Read, validate, convert, inspect and featurise ranking and interaction data.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@contextmanager
def user_errors() -> Iterator[None]:
    """A fixable problem prints one line and exits 2, also when a command runs from Python or
    CliRunner (where ``mmrank.cli.main``'s own handler is not in the call stack)."""
    try:
        yield
    except MmrankError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
