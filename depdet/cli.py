"""The ``depdet`` command line (Typer + Rich).

Each verb is a thin function here: it parses typed options and calls the pipeline. Errors that a
user can fix (:class:`depdet.errors.DepdetError`) print one red line and exit 1; a traceback is
shown only with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from depdet import SCREENING_DISCLAIMER, THIRD_PARTY_TERMS, __version__
from depdet.errors import DepdetError

app = typer.Typer(
    name="depdet",
    help="Video -> depression-screening research pipeline (features, models, reports). "
    "Outputs are research screening probabilities, not a diagnosis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

_STATE = {"verbose": False}


def _version_text() -> str:
    lines = [f"depdet {__version__}", SCREENING_DISCLAIMER, "Components with their own terms:"]
    lines += [f"  - {k}: {v}" for k, v in THIRD_PARTY_TERMS.items()]
    return "\n".join(lines)


def _version_callback(value: bool):
    if value:
        out.print(_version_text(), highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Show the version and the third-party licence terms.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug logs.")] = False,
):
    _STATE["verbose"] = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def info():
    """Show versions, optional accelerators, and the licence terms of third-party components."""
    from depdet.pipeline.environment import environment_report

    out.print(_version_text(), highlight=False)
    out.print()
    for k, v in environment_report().items():
        out.print(f"{k:>22}: {v}", highlight=False)


# ---------------------------------------------------------------- extract (issue 2)
# ---------------------------------------------------------------- weights (issue 2)
# ---------------------------------------------------------------- models (issue 3)
# ---------------------------------------------------------------- synth / train / evaluate (issue 4)
# ---------------------------------------------------------------- predict / demo (issue 5)


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point: runs the app and turns DepdetError into one line + exit 1."""
    try:
        app(args=argv, standalone_mode=False)
    except DepdetError as e:
        if _STATE["verbose"]:
            console.print_exception()
        console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[yellow]interrupted[/]: finished outputs are kept; rerun the same command to resume.")
        sys.exit(130)
    except __import__("click").exceptions.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:  # unexpected: keep it one line unless --verbose
        if _STATE["verbose"]:
            console.print_exception()
        else:
            console.print(f"[bold red]internal error:[/] {type(e).__name__}: {e} (rerun with --verbose for the traceback)",
                          highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
