"""`mmrank recommend`: top-k items for one user of a trained sequential run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mmrank.cli.app import app


@app.command()
def recommend(
    run: Path = typer.Argument(..., help="run directory of a sequential model (mmrank train configs/ml100k_sasrec.yaml)"),
    user: str = typer.Option(..., "--user", "-u", help="user id as in the dataset's .inter file"),
    k: int = typer.Option(10, "-k", "--k", min=1, help="how many items to recommend"),
    data: Optional[Path] = typer.Option(None, "--data", help="RecBole dataset folder (default: the run's own)"),
) -> None:
    """Recommend the next items for a user: every item the user has seen is left out, the rest are
    ranked by the model; prints rank, title and score.

    Example: mmrank recommend runs/ml100k_sasrec --user 196 -k 10
    """
    from mmrank.sequential.recommend import recommend as top_items

    console = Console()
    with console.status("scoring"):
        rows = top_items(run, user, k, data)
    table = Table(title=f"top {k} for user {user} ({run})")
    for col, justify in (("rank", "right"), ("item", "right"), ("title", "left"), ("score", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(str(r["rank"]), r["item_id"], r["title"], f"{r['score']:.4f}")
    console.print(table)
