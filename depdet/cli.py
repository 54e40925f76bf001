"""The ``depdet`` command line (Typer + Rich): the entry point.

Each verb is a thin function in :mod:`depdet.commands` (grouped by stage, registered on the one
Typer app of :mod:`depdet.commands.app`): it parses typed options, calls the pipeline, and hands the
results to :mod:`depdet.pipeline.reports.console` (every table, summary, progress display and
warning; the two consoles live there). This module imports the commands, runs the app and is the
error boundary: errors that a user can fix (:class:`depdet.errors.DepdetError`) print one red line
and exit 1; a traceback is shown only with ``--verbose``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from depdet import threads as thread_policy
from depdet.errors import DepdetError, output_error
from depdet.pipeline.reports.console import _CONTROL, console, out, plain

# the commands register on the shared app when their modules are imported (the order is the help page's)
# isort: off
from depdet.commands.app import _STATE, app
from depdet.commands import extract as _extract_commands  # noqa: F401
from depdet.commands import models as _model_commands  # noqa: F401
from depdet.commands import training as _training_commands  # noqa: F401
from depdet.commands import predicting as _predicting_commands  # noqa: F401

# isort: on

#: what other code (tests, scripts) takes from here: the entry point, the app and the two consoles
__all__ = ["app", "console", "main", "out", "plain"]


_INTERRUPTED = 130  # 128 + SIGINT


def _say(label: str, message: str, style: str = "bold red") -> None:
    """One line on stderr for the error boundary: ``label`` styled, ``message`` as plain text; it
    never raises (a console that fails falls back to a bare write)."""
    try:
        console.print(f"[{style}]{label}[/] {plain(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    except Exception:  # noqa: BLE001 - the last line of defence must not fail
        try:
            sys.stderr.write(f"{label} {_CONTROL.sub('?', message)}\n")
        except Exception:  # noqa: BLE001
            pass


#: Commands whose arguments are input paths (see _dash_paths).
_PATH_COMMANDS = ("extract", "predict")


def _dash_paths(args: list[str]) -> list[str]:
    """Input files whose names start with ``-`` (depdet's choice): in ``extract`` and ``predict``, a token
    that starts with ``-``, is not one of the command's options (nor ``--opt=value``) and names an
    existing file or folder is that path: ``depdet predict -dash.mp4`` reads ``./-dash.mp4`` (with a
    note on stderr), not ``-d ash.mp4``. A token like ``-dash.mp4`` (a video or list extension) that
    names no file is refused, with the hint to write ``./-dash.mp4`` or put it after ``--``. Tokens
    after ``--`` are left alone (they are paths anyway).
    """
    i = 0
    while i < len(args) and args[i].startswith("-"):  # root options (--verbose) before the command
        i += 1
    if i >= len(args) or args[i] not in _PATH_COMMANDS:
        return args
    import typer.main

    from depdet.pipeline.media.inputs import LIST_EXTENSIONS, VIDEO_EXTENSIONS

    cmd = typer.main.get_command(app).commands[args[i]]  # type: ignore[attr-defined]
    known = {o for prm in cmd.params for o in (*getattr(prm, "opts", ()), *getattr(prm, "secondary_opts", ()))}
    known.add("--help")
    out_args = list(args[: i + 1])
    for j, tok in enumerate(args[i + 1 :], i + 1):
        if tok == "--":
            out_args += args[j:]
            break
        if (
            not tok.startswith("-")
            or tok == "-"
            or tok in known
            or (tok.startswith("--") and tok.split("=", 1)[0] in known)
        ):
            out_args.append(tok)
        elif os.path.lexists(tok):
            console.print(
                f"[yellow]note:[/] {plain(tok)} is read as the file {plain('./' + tok)} (a file of that name "
                "exists; it is not an option)",
                highlight=False,
            )
            out_args.append(f"./{tok}")
        elif Path(tok).suffix.lower() in (*VIDEO_EXTENSIONS, *LIST_EXTENSIONS):
            raise DepdetError(
                f"no such file {tok!r} (a name that starts with '-' is read as a file, not as options)",
                hint=f"check the name; write it as ./{tok}, or after -- (depdet {args[i]} ... -- {tok})",
            )
        else:
            out_args.append(tok)
    return out_args


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app and turns DepdetError into one line + exit 1."""
    _STATE["argv"] = ["depdet", *[str(a) for a in argv]] if argv is not None else list(sys.argv)  # recorded by train
    thread_policy.prepare_env()  # OMP_WAIT_POLICY=PASSIVE before torch's OpenMP runtime starts (depdet/threads.py)
    try:
        argv = _dash_paths([str(a) for a in (argv if argv is not None else sys.argv[1:])])
        # With standalone_mode=False, click *returns* the code of a typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False, prog_name="depdet")
        if code == _INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130) and click returns its code
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except DepdetError as e:
        if _STATE["verbose"]:
            console.print_exception()
        _say("error:", str(e))
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        _say("interrupted:", "finished outputs are kept; rerun the same command to resume.", style="yellow")
        sys.exit(_INTERRUPTED)
    except typer.Exit as e:
        if e.exit_code == _INTERRUPTED:
            _say("interrupted:", "finished outputs are kept; rerun the same command to resume.", style="yellow")
        sys.exit(e.exit_code)
    except typer.exceptions.TyperException as e:  # usage errors (click's, vendored by typer >= 0.2x)
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        cmd = getattr(getattr(e, "ctx", None), "command_path", None) or "depdet"
        _say("error:", f"{msg} (fix: see `{cmd} --help`)")
        sys.exit(getattr(e, "exit_code", 2))
    except Exception as e:  # unexpected: keep it one line unless --verbose
        err = output_error(e)  # a full disk or read-only output the call site did not name: the same one line
        if err is not None:
            if _STATE["verbose"]:
                console.print_exception()
            _say("error:", str(err))
            sys.exit(1)
        if _STATE["verbose"]:
            console.print_exception()
        else:
            _say("internal error:", f"{type(e).__name__}: {e} (rerun with --verbose for the traceback)")
        sys.exit(2)
    finally:
        thread_policy.restore()  # run in-process (tests, notebooks): the caller's torch thread count back


if __name__ == "__main__":
    main()
