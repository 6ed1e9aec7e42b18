"""The `mmrank` command line: thin commands that call the library.

Each command module attaches its commands to the apps in ``cli/app.py``; importing them here
registers them. Errors that a user can fix (``MmrankError``) print one line and exit 2.
"""

from __future__ import annotations

import sys

from rich.console import Console

from mmrank.cli.app import app
from mmrank.errors import MmrankError

# Command modules, one per capability (imported for their registrations).
from mmrank.cli import data_cmds  # noqa: F401,E402
from mmrank.cli import demo_cmd  # noqa: F401,E402
from mmrank.cli import train_cmds  # noqa: F401,E402
from mmrank.cli import recommend_cmd  # noqa: F401,E402
from mmrank.cli import serve_cmds  # noqa: F401,E402
from mmrank.cli import features_cmds  # noqa: F401,E402
from mmrank.cli import audit_cmds  # noqa: F401,E402
from mmrank.cli import clicks_cmds  # noqa: F401,E402
from mmrank.cli import retrieval_cmds  # noqa: F401,E402
from mmrank.cli import personalize_cmds  # noqa: F401,E402
from mmrank.cli import ab_cmds  # noqa: F401,E402
from mmrank.cli import item_features_cmd  # noqa: F401,E402


def main() -> None:
    """The `mmrank` entry point: runs the Typer app; an MmrankError prints one line and exits
    with its code (2 for bad input or config).
    """
    try:
        app()
    except MmrankError as e:
        Console(stderr=True).print(f"error: {e}", style="bold red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
