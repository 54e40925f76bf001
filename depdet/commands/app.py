"""The ``depdet`` Typer app and the helpers its commands share: the app itself (with its root
options and ``info``), readable help pages, output checks, the closed choices built from the
registries, ``--device`` and ``--cluster`` checks. The commands register on this app from
:mod:`depdet.commands.extract`, :mod:`~depdet.commands.models`, :mod:`~depdet.commands.training` and
:mod:`~depdet.commands.predicting`; :mod:`depdet.cli` imports them all and runs the app.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

import typer

from depdet import SCREENING_DISCLAIMER, THIRD_PARTY_TERMS, __version__
from depdet.errors import DepdetError
from depdet.pipeline.reports import console as show  # every table, summary and progress display
from depdet.pipeline.reports.console import console, out

app = typer.Typer(
    name="depdet",
    help="Video -> depression-screening research pipeline (features, models, reports). "
    "Outputs are research screening probabilities, not a diagnosis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _readable_metavars() -> None:
    """Help pages show what a value looks like, not Typer's internal names (depdet's choice): a flag
    (``--help``, ``--force``) shows no ``<bool>``, a bounded number shows ``<int>`` beside its
    ``[x>=1]`` (not ``<int range>``), a repeatable value shows ``<path>`` (not ``<list[Path]>``).
    Wraps Typer's ``display_type`` once; an explicit ``metavar=`` still wins."""
    from typer.core import _TyperParameter

    original = _TyperParameter.display_type
    if getattr(original, "_depdet", False):
        return

    def display_type(self, ctx):
        if getattr(self, "is_flag", False):
            return ""
        text = original(self, ctx)
        text = re.sub(r"^<(\w+) range>$", r"<\1>", text)
        return re.sub(r"^<list\[(\w+)\]>$", lambda m: f"<{m.group(1).lower()}>", text)

    display_type._depdet = True  # type: ignore[attr-defined]
    # setattr: a deliberate patch of Typer's method (mypy refuses a plain assignment to a method)
    setattr(_TyperParameter, "display_type", display_type)  # noqa: B010

    # Typer's help tables make their columns with Rich's default overflow, "ellipsis": at 80 columns
    # an option name or a preset name was cut ("--threshold-met…"). Fold instead: nothing is lost.
    import rich.table
    import rich.text
    from typer import rich_utils

    class _FoldingTable(rich.table.Table):
        def add_row(self, *renderables, **kwargs):
            while len(self.columns) < len(renderables):
                self.add_column(overflow="fold")
            return super().add_row(*renderables, **kwargs)

    if getattr(rich_utils, "Table", None) is rich.table.Table:
        setattr(rich_utils, "Table", _FoldingTable)  # noqa: B010 - a deliberate patch (mypy refuses assigning to a class)
    help_of = getattr(rich_utils, "_get_parameter_help", None)
    if help_of is not None:  # the help cell's texts: folded too (a long word, e.g. a preset name)

        def folded_help(*args, **kwargs):
            cell = help_of(*args, **kwargs)
            for part in getattr(cell, "renderables", ()):
                if isinstance(part, rich.text.Text):
                    part.overflow = "fold"
            return cell

        rich_utils._get_parameter_help = folded_help


_readable_metavars()


class _State(TypedDict, total=False):
    verbose: bool  # --verbose: tracebacks on errors
    argv: list[str]  # the command line as given (recorded by train)


_STATE: _State = {"verbose": False}


def _check_output(path: Path, what: str, *, folder: bool = False) -> None:
    """Fail before any work when ``path`` cannot be written: its nearest existing ancestor must be a
    folder we can create files in, and ``path`` itself must not be a folder (a file output) or a
    file (a folder output)."""
    p = Path(path).expanduser()
    if p.exists():
        if folder and not p.is_dir():
            raise DepdetError(f"{what} exists and is not a folder", path=p, hint="give a folder name")
        if not folder and p.is_dir():
            raise DepdetError(f"{what} is a folder", path=p, hint="give a file name, e.g. results.csv")
    probe = p if (folder and p.is_dir()) else p.parent
    while not probe.exists():
        if probe.is_symlink():
            raise DepdetError(f"{what}: {probe} is a broken symbolic link", path=p, hint="give another location")
        probe = probe.parent
    if not probe.is_dir():
        raise DepdetError(f"{what} is not writable: {probe} is not a folder", path=p, hint="give another location")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".depdet-write-test-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise DepdetError(
            f"{what} is not writable: cannot create files in {probe} ({e.strerror or e})",
            path=p,
            hint="choose a writable location",
        ) from None


def _version_text() -> str:
    lines = [f"depdet {__version__}", SCREENING_DISCLAIMER, "Components with their own terms:"]
    lines += [f"  - {k}: {v}" for k, v in THIRD_PARTY_TERMS.items()]
    return "\n".join(lines)


def _version_callback(value: bool):
    if value:
        out.print(f"depdet {__version__}", highlight=False, markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar=" ",
            callback=_version_callback,
            is_eager=True,
            help="Show the version (licence terms: `depdet info`).",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", metavar=" ", help="Show tracebacks and debug logs.")
    ] = False,
):
    _STATE["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
def info():
    """Show versions, optional accelerators, and the licence terms of third-party components."""
    show.print_info(_version_text())


# ---------------------------------------------------------------- extract (issue 2)
def _choices(values: Iterable[str]) -> Any:
    """A closed choice for Typer, built from the registry that defines it (one list, one place): a
    ``Literal`` of the registry's names, so the command receives the chosen name as a plain ``str``
    and the help page lists the names. For mypy each choice below is ``str`` (a ``Literal`` built at
    run time cannot be a static type); Typer checks the value against the registry."""
    return Literal.__getitem__(tuple(values))


_layout_help = __import__("depdet.pipeline.store.layout", fromlist=["x"]).describe
_train_vocab = __import__("depdet.pipeline.training.presets", fromlist=["x"])
if TYPE_CHECKING:
    Layout = str
    Detector = str
    LandmarkNorm = str
    IdFrom = str
    Align = str
    Quantize = str
    Preset = str
    Optimizer = str
    Scheduler = str
    Select = str
    ThresholdMethod = str
    Gender = str
    Fold = str
    DataLayout = str
    DemoModel = str
else:
    Layout = _choices(__import__("depdet.pipeline.store.layout", fromlist=["x"]).LAYOUTS)
    Detector = _choices(__import__("depdet.pipeline.features.spec", fromlist=["x"]).DETECTORS)
    LandmarkNorm = _choices(__import__("depdet.pipeline.features.spec", fromlist=["x"]).LANDMARK_NORMS)
    IdFrom = _choices(__import__("depdet.pipeline.media.inputs", fromlist=["x"]).ID_FROM)
    Align = _choices(__import__("depdet.pipeline.features.timeline", fromlist=["x"]).RULES)
    Quantize = _choices(__import__("depdet.extractors.vggish", fromlist=["x"]).QUANTIZE_RULES)
    Preset = _choices(_train_vocab.list_presets())
    Optimizer = _choices(_train_vocab.OPTIMIZERS)
    Scheduler = _choices(_train_vocab.SCHEDULERS)
    Select = _choices(__import__("depdet.pipeline.training.metrics", fromlist=["x"]).SELECTION_CRITERIA)
    ThresholdMethod = _choices(__import__("depdet.pipeline.inference.calibration", fromlist=["x"]).THRESHOLD_METHODS)
    Gender = _choices(__import__("depdet.pipeline.data.splits", fromlist=["x"]).GENDERS)
    Fold = _choices(__import__("depdet.pipeline.store.labels", fromlist=["x"]).FOLDS + ("all",))
    DataLayout = _choices(("auto",) + __import__("depdet.pipeline.store.layout", fromlist=["x"]).LAYOUTS)
    DemoModel = _choices(__import__("depdet.pipeline.demo.run", fromlist=["x"]).DEMO_MODELS)
_DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def _device(value: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N (an open choice: N is any GPU index)."""
    import re as _re

    if not _re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r} is not a device: use {_DEVICE_HELP}")
    return value


def _check_cluster(cluster: str | None) -> None:
    """``--cluster``: its form, and the Dask extra installed, checked before any work."""
    if cluster:
        from depdet.pipeline.orchestration.executors import import_distributed, parse_cluster

        parse_cluster(cluster)
        import_distributed()  # says how to install the extra before any work


def _cnn_note(device: str, detector: str) -> None:
    """A note when the CNN face detector cannot follow VGGish to CUDA."""
    if device.startswith("cuda") and detector == "cnn":
        import dlib

        if not getattr(dlib, "DLIB_USE_CUDA", False):
            console.print(
                "[yellow]note:[/] this dlib build has no CUDA: the CNN face detector runs on the CPU", highlight=False
            )


def _checkpoint_path(path: Path) -> Path:
    """``--checkpoint`` takes the file or the run folder that holds it (``RUN/checkpoint.pt``)."""
    from depdet.api import checkpoint_path

    return checkpoint_path(path)


def _examples(*lines: str) -> str:
    """A command's help epilog: runnable examples."""
    return "Examples:\n\n" + "\n\n".join(f"  {ln}" for ln in lines)


def _names(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())
