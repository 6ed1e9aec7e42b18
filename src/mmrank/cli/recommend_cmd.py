"""`mmrank recommend`: top-k items for one user of a trained sequential run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mmrank.cli.app import app, user_errors

NO_TITLES = ("no titles: the data has no item file with titles (RecBole .item, MovieLens u.item / movies.dat) — "
             "item ids only")


@app.command()
def recommend(
    run: Path = typer.Argument(..., help="run directory of a sequential model (mmrank train configs/ml100k_sasrec.yaml)"),
    user: str = typer.Option(..., "--user", "-u", help="user id as in the data set"),
    k: int = typer.Option(10, "-k", "--k", min=1, help="how many items to recommend"),
    data: Optional[Path] = typer.Option(None, "--data", help="other interaction data to read the user's history from "
                                                             "(default: the run's own, kept in RUN/recommend/)"),
) -> None:
    """Recommend the next items for a user: every item the user has seen is left out, the rest are
    ranked by the model; prints rank, title (when the data has titles) and score.

    The first call scores every user once and caches their top items in RUN/recommend/; later
    calls read that cache and answer in well under a second.

    Example: mmrank recommend runs/ml100k_sasrec --user 196 -k 10
    """
    from mmrank.sequential.recommend import recommend as top_items

    err = Console(stderr=True)
    with user_errors():
        with err.status("scoring (the first call scores every user once and caches the result)"):
            rows = top_items(run, user, k, data)
    with_titles = any(r["title"] is not None for r in rows)
    table = Table(title=f"top {k} for user {user} ({run})")
    columns = [("rank", "right"), ("item", "right")] + ([("title", "left")] if with_titles else []) + [("score", "right")]
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for r in rows:
        title = [r["title"] if r["title"] is not None else "(no title)"] if with_titles else []
        table.add_row(str(r["rank"]), r["item_id"], *title, f"{r['score']:.4f}")
    Console().print(table)
    if not with_titles and rows:
        Console().print(NO_TITLES, highlight=False)
    if not rows:
        Console().print(f"user {user} has seen every item: nothing left to recommend", highlight=False)
        raise typer.Exit(1)
