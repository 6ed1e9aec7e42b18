"""The Typer apps every command module attaches to (kept apart so modules never import each other)."""

import typer

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
