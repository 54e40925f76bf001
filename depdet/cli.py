"""The ``depdet`` command line (Typer + Rich).

Each verb is a thin function here: it parses typed options, calls the pipeline, and hands the
results to :mod:`depdet.pipeline.reports.console` (every table, summary, progress display and
warning; the two consoles live there). Errors that a user can fix
(:class:`depdet.errors.DepdetError`) print one red line and exit 1; a traceback is shown only with
``--verbose``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict, cast

import typer

from depdet import SCREENING_DISCLAIMER, THIRD_PARTY_TERMS, __version__
from depdet import threads as thread_policy
from depdet.errors import DepdetError, output_error
from depdet.pipeline.reports import console as show  # every table, summary and progress display
from depdet.pipeline.reports.console import _CONTROL, console, out, plain
from depdet.pipeline.training.options import parse_dims, parse_model_opts

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


@app.command(
    epilog=_examples(
        "depdet extract videos/ -o features/ --labels labels.csv",
        "depdet extract vlogs/* -o features/ --id-from relpath --fps 1 --workers 2",
        "depdet extract videos/ -o lmvd_features/ --layout lmvd --device cuda   (VGGish on the GPU)",
    )
)
def extract(
    inputs: Annotated[
        list[Path], typer.Argument(help="Video files, folders (searched recursively) or .txt lists of paths.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created; resumable).")],
    layout: Annotated[
        Layout, typer.Option(help="On-disk layout: " + " or ".join(map(_layout_help, ("dvlog", "lmvd"))) + ".")
    ] = "dvlog",
    fps: Annotated[float, typer.Option(help="Output rows per second for every stream (D-Vlog: 1).")] = 1.0,
    audio: Annotated[
        str | None,
        typer.Option(
            help="Audio extractors, comma-separated: egemaps, vggish. Default: egemaps for dvlog, vggish for lmvd."
        ),
    ] = None,
    visual: Annotated[
        str, typer.Option(help="Visual extractors, comma-separated: landmarks[,headpose].")
    ] = "landmarks",
    landmark_norm: Annotated[
        LandmarkNorm,
        typer.Option(help="Per-frame z-score of the 136 landmark values (as D-Vlog/DepMamba), or raw pixels."),
    ] = "row-zscore",
    detector: Annotated[
        Detector, typer.Option(help="Face detector: dlib HOG (fast) or MMOD CNN (slower, more robust).")
    ] = "hog",
    vggish_weights: Annotated[
        Path | None,
        typer.Option(help="VGGish checkpoint (default: $DEPDET_WEIGHTS_DIR or the cache; see `depdet weights`)."),
    ] = None,
    vggish_postprocess: Annotated[
        bool, typer.Option(metavar=" ", help="Apply VGGish's PCA + 8-bit quantisation (as the AudioSet release).")
    ] = True,
    vggish_quantize: Annotated[
        Quantize, typer.Option(help="VGGish 8-bit quantisation: truncate (Google's reference) or round (torchvggish).")
    ] = "truncate",
    align: Annotated[
        Align,
        typer.Option(
            help="Stream lengths: union keeps every row any stream has (the rows a stream lacks invalid); common cuts to the shortest stream's end (the reference loaders' rule)."
        ),
    ] = "union",
    labels: Annotated[
        Path | None,
        typer.Option(
            help="CSV with index,label[,gender,fold,group]: sets those samples' metadata (checked before any work)."
        ),
    ] = None,
    id_from: Annotated[
        IdFrom,
        typer.Option(
            help="Sample ids from the file stem, or from the relative path as given (p01/video.mpg -> p01_video) when folders hold files of the same name. Letters of any script are kept; other characters become _ (see README, Identity)."
        ),
    ] = "stem",
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: all cores).", min=1)] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            metavar=" ",
            help="Redo samples already extracted; with settings that differ from the folder's, re-extract every sample of the folder.",
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            metavar=" ",
            help="If another depdet run is writing to the folder, wait for it instead of stopping.",
        ),
    ] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            metavar=" ",
            help="Keep the streams that could be extracted (e.g. no audio track, no face); the missing one is written as invalid rows.",
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            metavar=" ",
            help="Exit 1 when any clip failed (default: exit 0 when at least one clip of this run is usable; failures are listed).",
        ),
    ] = False,
    device: Annotated[
        str,
        typer.Option(
            parser=_device,
            metavar="DEVICE",
            help=f"Where VGGish runs: {_DEVICE_HELP}. dlib (landmarks) runs on the CPU.",
        ),
    ] = "auto",
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Threads for torch in this process (with --workers 1); each worker process uses one (default: depdet's, the cores available less the load; see `depdet info`).",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help='Run on a Dask cluster: local:N (N single-threaded worker processes here), tcp://HOST:PORT (a running scheduler) or slurm:N (N jobs via dask-jobqueue and your Dask jobqueue config). Needs pip install -e ".\\[cluster]"; -o must be reachable from every worker.'
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="K/N: only this shard's 1/N of the inputs (a stable hash of the id), for job arrays; shards run at once on one folder; afterwards `depdet store index OUT` builds the views."
        ),
    ] = None,
):
    """Extract aligned D-Vlog/LMVD-style features from raw videos into a feature store.

    Exit code (depdet's rule): 0 when the batch ran to its end and at least one of its clips is
    usable (extracted, partial or already done), even if others failed (they are listed at the end
    with the fix); 1 when none is, on a run-level error, or with --strict when any clip failed.
    """
    from depdet import api
    from depdet.pipeline.orchestration.outcome import extract_outcome

    if cluster and workers:
        raise DepdetError(
            "--workers and --cluster do not go together", hint="with --cluster local:N, N is the worker count"
        )
    _check_cluster(cluster)
    spec = api.feature_spec(
        layout,
        fps=fps,
        audio=audio,
        visual=visual,
        landmark_norm=landmark_norm,
        detector=detector,
        vggish_postprocess=vggish_postprocess,
        vggish_quantize=vggish_quantize,
        align=align,
    )
    # only VGGish runs on torch: eGeMAPS + landmarks never import it (~2 s CPU per process)
    dev = api.extract_options(spec, allow_partial=allow_partial, vggish_weights=vggish_weights, device=device).device
    _cnn_note(dev, detector)
    if threads or "vggish" in spec.audio:  # torch runs here only for VGGish (with --workers 1)
        thread_policy.configure(threads)
    _check_output(out_dir, "output folder (-o)", folder=True)
    show.print_extract_start(out_dir, layout, spec)
    with show.ExtractProgress() as shown:
        report = api.extract(
            inputs,
            spec=spec,
            layout=layout,
            allow_partial=allow_partial,
            vggish_weights=vggish_weights,
            device=dev,
            out=out_dir,
            workers=workers,
            force=force,
            labels=labels,
            id_from=id_from,
            wait=wait,
            on_event=shown.on_event,
            cluster=cluster,
            shard=shard,
        )
    outcome = extract_outcome(report, out_dir, shard=shard, strict=strict)
    show.print_extract_summary(report, outcome, out_dir, shard)
    if outcome.exit_reason:
        raise typer.Exit(1)


# ---------------------------------------------------------------- store
store_app = typer.Typer(
    help="Inspect and maintain a feature folder (the records are the source of truth).", no_args_is_help=True
)
app.add_typer(store_app, name="store")


@store_app.command("index")
def store_index(
    folder: Annotated[Path, typer.Argument(help="A feature folder written by `depdet extract` (or `depdet synth`).")],
    wait: Annotated[
        bool, typer.Option("--wait", metavar=" ", help="Wait for a run that is writing to the folder.")
    ] = False,
):
    """Rebuild manifest.jsonl, labels.csv and features.json from the sample records."""
    from depdet.pipeline.store import FeatureStore

    store = FeatureStore.open(folder)
    with store.lock(wait=wait):
        migrated = store.migrate_legacy()
        if not store.has_records():
            raise DepdetError(
                "no sample records in this folder",
                path=folder,
                hint="it was not written by `depdet extract`; released D-Vlog/LMVD folders need no index",
            )
        counts = store.rebuild_views()
    show.print_store_index(folder, counts, migrated)


# ---------------------------------------------------------------- weights (issue 2)
weights_app = typer.Typer(
    help="List, verify and install model weight files (offline-first): with no subcommand, lists them.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(weights_app, name="weights")


@weights_app.callback()
def weights(ctx: typer.Context):
    """List known weight files with status (missing / ok / checksum mismatch), path, SHA-256 and licence."""
    if ctx.invoked_subcommand is None:
        show.print_weights()


@weights_app.command("list")
def weights_list():
    """List known weight files with status, path, SHA-256 and licence."""
    show.print_weights()


@weights_app.command("install")
def weights_install(
    name: Annotated[str, typer.Argument(help="Registry name, e.g. vggish, vggish-pca (see `depdet weights`).")],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="Local file, folder (installs this file and its companions, e.g. vggish + vggish-pca) or URL.",
        ),
    ],
):
    """Copy or download a weight file into the cache ($DEPDET_WEIGHTS_DIR or ~/.cache/depdet/weights), verifying its checksum."""
    from depdet.weights.install import install, install_from_dir
    from depdet.weights.registry import get_entry

    done = install_from_dir(name, source) if Path(source).is_dir() else {name: install(name, source)}
    for n, path in done.items():
        out.print(f"installed {n} -> {plain(path)} ({get_entry(n).check} verified)", highlight=False)


# ---------------------------------------------------------------- models (issue 3)


@app.command("models")
def models_cmd(
    name: Annotated[
        str | None,
        typer.Argument(
            help="A model name: print its card (paper, what follows the paper or "
            "the public code, depdet's own choices, every option, parameters)."
        ),
    ] = None,
    dims: Annotated[
        str,
        typer.Option(
            "--dims",
            help="Feature sizes to count parameters for, e.g. visual=136,audio=128 "
            "(default: D-Vlog, visual=136,audio=25).",
        ),
    ] = "visual=136,audio=25",
    pattern: Annotated[str, typer.Option("--filter", help="Glob on model names, e.g. '*mamba*'.")] = "*",
    model_opt: Annotated[
        list[str] | None, typer.Option(help="With NAME: count parameters with option KEY=VALUE (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar=" ", help="With NAME: the card as JSON.")] = False,
):
    """List the registered models (paper, inputs, parameter count, kind), or print one model's card."""
    import json as _json

    from depdet.models import list_models

    parsed = parse_dims(dims)
    if name is not None:
        from depdet.models.registry import model_card

        cfg = parse_model_opts(model_opt)
        card = model_card(name, parsed, **cfg)
        if as_json:
            typer.echo(_json.dumps(card, indent=1, default=list))
        else:
            show.print_model_card(card, parsed, cfg)
        return
    names = list_models(pattern)
    if not names:
        console.print(f"[yellow]no model matches {pattern!r}[/] (see `depdet models` for all names)")
        raise typer.Exit(1)
    out.print(show.models_table(names, parsed))


@app.command("presets")
def presets_cmd(
    name: Annotated[
        str | None,
        typer.Argument(help="A preset: print it resolved (every value, the note, the fps and dataset it assumes)."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            metavar=" ",
            help="JSON: TrainConfig field names as keys, preprocessing under "
            "'preprocess', model options under 'model_config' (all presets without NAME).",
        ),
    ] = False,
):
    """List the training presets (paper recipes and depdet's variants), or print one resolved."""
    import json as _json

    from depdet.pipeline.training.config import resolve_preset
    from depdet.pipeline.training.presets import list_presets

    if as_json:
        data = resolve_preset(name) if name else {n: resolve_preset(n) for n in list_presets()}
        typer.echo(_json.dumps(data, indent=1, default=list))
    elif name is None:
        show.print_presets()
    else:
        show.print_preset(name, resolve_preset(name))


# ---------------------------------------------------------------- synth / train / evaluate (issue 4)


@app.command(epilog=_examples("depdet synth -o syn/", "depdet synth -o syn_lmvd/ --layout lmvd --n 200 --signal 3"))
def synth(
    out_pos: Annotated[
        Path | None, typer.Argument(hidden=True, help="Output folder (old spelling of -o/--out).")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (must be new or empty).")] = None,
    layout: Annotated[
        Layout, typer.Option(help="dvlog (961 samples, folds 647/102/212) or lmvd (1823, 8:1:1).")
    ] = "dvlog",
    n: Annotated[int | None, typer.Option(help="Number of samples (default: the real dataset's size).", min=6)] = None,
    signal: Annotated[
        float, typer.Option(help="Planted temporal signal strength (0 = none, 1 moderate, 3 easy).", min=0.0)
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    max_len: Annotated[int | None, typer.Option(help="Longest sequence in rows (default: the real maximum).")] = None,
    min_len: Annotated[int | None, typer.Option(help="Shortest sequence in rows (default: the real minimum).")] = None,
    length_scale: Annotated[
        float, typer.Option(help="Scale the drawn lengths before clipping (< 1 for short test sets).")
    ] = 1.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar=" ", help="Write into a non-empty folder.")] = False,
):
    """Write a SYNTHETIC dataset in the D-Vlog or LMVD layout (for tests and benchmarks)."""
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    target = out_dir if out_dir is not None else out_pos
    if target is None or (out_dir is not None and out_pos is not None):  # none, or both
        raise DepdetError("give the output folder once, as -o/--out DIR", hint="e.g. depdet synth -o syn/")
    out_dir = target
    s = make_synthetic(
        out_dir,
        SynthConfig(
            layout=layout, n=n, signal=signal, seed=seed, max_len=max_len, min_len=min_len, length_scale=length_scale
        ),
        overwrite=overwrite,
    )
    show.print_synth(s, out_dir, signal)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
    epilog=_examples(
        "depdet train --data features/ --model fusion_concat --folds 5 --seeds 1 2 3",
        "depdet train --data dvlog/ --preset depmamba-dvlog --device cuda",
        "depdet train --config runs/depmamba-dvlog-dvlog/config.yaml   (re-run a run from its own folder)",
    ),
)
def train(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="Dataset folder: D-Vlog, LMVD or `depdet extract` output.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Registry model (see `depdet models`); default: the preset's.")
    ] = None,
    preset: Annotated[
        Preset | None,
        typer.Option(
            help="A recipe (see `depdet presets NAME` for all values and the note): paper presets "
            + ", ".join(
                n
                for n in __import__("depdet.pipeline.training.presets", fromlist=["x"]).list_presets()
                if not n.endswith("-fixed")
            )
            + " reproduce the paper's public code (or text), its batches included (random order, whole batches); depdet's variants: "
            + ", ".join(
                n
                for n in __import__("depdet.pipeline.training.presets", fromlist=["x"]).list_presets()
                if n.endswith("-fixed")
            )
            + " (their changes: padding fix, normalisation, AMP, length buckets, micro-batches)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Re-run a run from its own folder: RUN/config.yaml (or config.json); "
            "only --run-dir (default RUN-rerun), --device and --threads may be given with it.",
        ),
    ] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Run folder (default: runs/<preset or model>-<data folder name>). Rerun to resume."),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Seeds, e.g. --seeds 1 2 3 (one run each; mean ± std reported).")
    ] = None,
    layout: Annotated[DataLayout, typer.Option(help="Dataset layout.")] = "auto",
    labels: Annotated[
        Path | None, typer.Option(help="Labels CSV (index,label[,gender,fold,group]) overriding the folder's.")
    ] = None,
    skip_missing: Annotated[
        bool,
        typer.Option(
            "--skip-missing",
            metavar=" ",
            help="Leave out ids whose feature files are missing (listed) instead of failing.",
        ),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            metavar=" ",
            help="Leave out ids whose feature arrays hold NaN or inf (listed) instead of failing.",
        ),
    ] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (default: the preset's, else 120).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the preset's, else 1e-4).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size (default: the preset's, else 16).")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (default: the preset's, else 0).")] = None,
    optimizer: Annotated[Optimizer | None, typer.Option(help="Optimiser (default: the preset's, else adam).")] = None,
    scheduler: Annotated[
        Scheduler | None,
        typer.Option(help="Learning-rate schedule (cosine: AllenYolk's) (default: the preset's, else none)."),
    ] = None,
    patience: Annotated[
        int | None, typer.Option(min=1, help="Early-stopping patience in epochs (default: none).")
    ] = None,
    select: Annotated[
        Select | None,
        typer.Option(
            help="Checkpoint criterion on valid (depmamba: mean of acc/P/R/F1) (default: the preset's, else depmamba)."
        ),
    ] = None,
    threshold_method: Annotated[
        ThresholdMethod | None,
        typer.Option(help="Decision threshold chosen on valid (fixed: 0.5) (default: the preset's, else youden)."),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            min=3,
            help="Stratified K-fold CV instead of the dataset's own folds: each of the K runs tests on one fold, validates on the next and trains on the other K-2; grouped (no group in two folds) when the labels have groups; each seed draws its own folds. Writes RUN/oof_predictions.csv; the headline metrics are pooled out-of-fold (default: the dataset's folds).",
        ),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            metavar=" ",
            help="With --folds: train one final model on all clips for the median of the folds' selected epochs (temperature and threshold from the out-of-fold predictions) as checkpoint.pt; without it, checkpoint.pt is the ensemble of the fold models.",
        ),
    ] = False,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            metavar="COL",
            help="Labels column naming each clip's group (person, channel) for grouped splits (default: group).",
        ),
    ] = None,
    allow_group_overlap: Annotated[
        bool,
        typer.Option(
            "--allow-group-overlap",
            metavar=" ",
            help="Accept a fixed split (fold column) that puts one group in two folds (refused otherwise; recorded).",
        ),
    ] = False,
    train_gender: Annotated[Gender, typer.Option(help="Train on this gender only (both: everyone).")] = "both",
    test_gender: Annotated[Gender, typer.Option(help="Validate/test on this gender only.")] = "both",
    standardize: Annotated[
        bool | None,
        typer.Option(
            "--standardize/--no-standardize",
            metavar=" ",
            help="Per-column z-score with training-fold statistics (default on).",
        ),
    ] = None,
    landmark_zscore: Annotated[
        bool | None,
        typer.Option(
            "--landmark-zscore/--no-landmark-zscore",
            metavar=" ",
            help="Per-row z-score of landmark columns (default on; idempotent).",
        ),
    ] = None,
    max_len: Annotated[
        int | None,
        typer.Option(min=1, help="Length cap: random window in training, first rows in evaluation (default: none)."),
    ] = None,
    crop_aug: Annotated[
        bool | None,
        typer.Option(
            "--crop-aug/--no-crop-aug",
            metavar=" ",
            help="DepMamba's random crops added to the training set (preset default).",
        ),
    ] = None,
    crop_min_len: Annotated[
        int | None, typer.Option(help="Shortest crop kept (DepMamba: 500 D-Vlog, 400 LMVD).")
    ] = None,
    rescale_rows: Annotated[
        bool,
        typer.Option(
            "--rescale-rows",
            metavar=" ",
            help="Data at another rate than the preset's (all presets: 1 row/s): multiply its row counts (max_len, crop_min_len, JAMFN's window) by data fps / preset fps instead of refusing.",
        ),
    ] = False,
    model_opt: Annotated[
        list[str] | None, typer.Option(help="Model option KEY=VALUE (repeatable), e.g. --model-opt d_state=16.")
    ] = None,
    device: Annotated[str, typer.Option(parser=_device, metavar="DEVICE", help=_DEVICE_HELP + ".")] = "auto",
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp", metavar=" ", help="float16 autocast on CUDA (default: the preset's; on without a preset)."
        ),
    ] = None,
    grad_clip: Annotated[float | None, typer.Option(help="Max gradient norm (default: none).")] = None,
    bucketing: Annotated[
        bool | None,
        typer.Option(
            "--bucketing/--no-bucketing",
            metavar=" ",
            help="Batches of similar lengths (every item once per epoch, seeded; less padding). Not the references' batches: other clips share a batch, which changes a clip's logits where padding leaks (padding='original', use_masks=False) and the BatchNorm batch statistics. Default: off in paper presets (the references' random order), on otherwise (depdet's).",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Bound memory: split a batch whose padded rows (items x longest) exceed this into micro-batches with gradient accumulation; the optimiser still sees the whole batch's mean loss, but BatchNorm normalises over each micro-batch and leaking padding (padding='original', use_masks=False) is each micro-batch's own. Default: 0 (never split, the references' whole batches) in paper presets, else depdet's 12,288 (keeps paper-size DepMamba under 8 GB on a CPU).",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU threads for torch (default: depdet's, the cores available less the load; a resumed run keeps its count; see `depdet info`).",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help='Fan the (seed, fold) runs out over a Dask cluster, one run per worker: local:N, tcp://HOST:PORT or slurm:N (pip install -e ".\\[cluster]"); the data and run folders must be reachable from every worker.'
        ),
    ] = None,
):
    """Train a model (one or several seeds) and report test metrics beside the all-depressed baseline."""
    from depdet.errors import ConfigError
    from depdet.pipeline.training import options as O

    opts = {k: v for k, v in locals().items() if k != "ctx"}  # the options as given
    argv = _STATE.get("argv") or list(sys.argv)
    if config is not None:
        from depdet.pipeline.training.rerun import rerun

        O.check_rerun_options(opts, list(ctx.args))
        summary, rdir = rerun(
            config,
            run_dir=run_dir,
            device=None if device == "auto" else device,
            threads=threads,
            command=argv,
            console=console,
        )
        show.print_train_summary(summary, rdir)
        return
    if data is None:
        raise ConfigError("no dataset given", hint="pass --data FOLDER (or --config RUN/config.yaml to re-run a run)")
    _check_cluster(cluster)
    thread_policy.configure(threads)
    cfg = O.build_train_config(opts, list(ctx.args))
    ds, load_options, load_args = O.load_training_data(opts)
    rdir = run_dir or O.default_run_dir(cfg, data)
    show.print_train_start(ds, cfg, rdir)
    from depdet.pipeline.training.runs import Trainer

    with show.train_progress() as progress:
        summary = Trainer(
            ds,
            cfg,
            rdir,
            progress=progress,
            log=lambda s: progress.console.print(plain(s), highlight=False),
            command=argv,
            load_options=load_options,
        ).run(cluster=cluster, load_args=load_args)
    show.print_train_summary(summary, rdir)


@app.command(
    epilog=_examples(
        "depdet evaluate --checkpoint runs/mine/ --data features/ --fold test",
        "depdet evaluate -c runs/mine/checkpoint.pt -d other_features/ --fold all --out eval.json",
    )
)
def evaluate(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", "-c", help="Checkpoint written by `depdet train` (.pt), or its run folder.")
    ],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled dataset folder (same feature spec).")],
    fold: Annotated[
        Fold, typer.Option(help="Which fold to evaluate (all: every sample, for datasets without folds).")
    ] = "test",
    out_json: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON output (default: <checkpoint>.eval-<data>-<fold>.json).")
    ] = None,
    layout: Annotated[DataLayout, typer.Option(help="Dataset layout.")] = "auto",
    labels: Annotated[Path | None, typer.Option(help="Labels CSV overriding the folder's.")] = None,
    skip_missing: Annotated[
        bool, typer.Option("--skip-missing", metavar=" ", help="Leave out ids whose feature files are missing.")
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            metavar=" ",
            help="Leave out ids whose feature arrays hold NaN or inf (listed) instead of failing.",
        ),
    ] = False,
    device: Annotated[str, typer.Option(parser=_device, metavar="DEVICE", help=_DEVICE_HELP + ".")] = "auto",
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle", metavar=" ", help="Allow scikit-learn checkpoints (pickled; only files you trust)."
        ),
    ] = False,
    allow_seen: Annotated[
        bool,
        typer.Option(
            "--allow-seen",
            metavar=" ",
            help="Score clips the checkpoint's model(s) trained or were selected on (refused otherwise); every output marks them.",
        ),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU threads for torch (default: depdet's, the cores available less the load; see `depdet info`).",
        ),
    ] = None,
):
    """Evaluate a checkpoint: Rich table (beside the all-depressed baseline, per gender) and JSON."""
    from depdet import api
    from depdet import fileio as dio

    checkpoint = _checkpoint_path(checkpoint)
    thread_policy.configure(threads)
    ck = api.load_checkpoint(checkpoint, trust_pickle=trust_pickle)
    # only the evaluated fold is read and checked (a bad sample of another fold does not block it)
    res = api.evaluate(
        ck,
        data,
        fold=fold,
        allow_seen=allow_seen,
        layout=layout,
        labels=labels,
        skip_missing=skip_missing,
        skip_invalid=skip_invalid,
        device=device,
        log=lambda line: console.print(f"[dim]data:[/] {plain(line)}", highlight=False),
    )
    path = out_json or checkpoint.with_name(f"{checkpoint.stem}.eval-{Path(data).resolve().name}-{fold}.json")
    existed = path.exists()
    dio.write_json(path, res)  # results first: a failure while printing can never lose them
    show.print_evaluation(res, ck, data, fold, path, existed)


# ---------------------------------------------------------------- compare / report (issue 21)
@app.command(
    epilog=_examples(
        "depdet compare runs/depmamba-dvlog runs/jamfn-dvlog",
        "depdet compare runs/a runs/b runs/c --json > comparison.json",
    )
)
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Two or more run folders written by `depdet train`, tested on the same clips.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", metavar=" ", help="Print the comparison as JSON instead of tables.")
    ] = False,
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


@app.command(
    epilog=_examples(
        "depdet report runs/depmamba-dvlog -o report.html",
        "depdet report runs/depmamba-dvlog -o results.md   (Markdown, figures in results_figures/)",
    )
)
def report(
    run: Annotated[Path, typer.Argument(help="A run folder written by `depdet train`.")],
    out_path: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="report.html (self-contained page) or report.md (Markdown + PNG figures beside it)."
        ),
    ],
    n_boot: Annotated[int, typer.Option("--n-boot", min=100, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
):
    """Write a results page for a supplement: config, data fingerprint, metrics with 95% intervals, curves, calibration, per gender, tables."""
    from depdet.pipeline.reports.run_report import write_run_report

    if out_path.suffix.lower() not in (".html", ".htm", ".md"):
        raise DepdetError(
            f"unsupported report format {out_path.suffix!r}", path=out_path, hint="use a .html or .md file name"
        )
    _check_output(out_path, "report (-o)")
    path = write_run_report(run, out_path, n_boot=n_boot, seed=seed)
    out.print(f"report: {plain(path)}", highlight=False)
    out.print(SCREENING_DISCLAIMER, highlight=False, markup=False)


# ---------------------------------------------------------------- predict / demo (issue 5)


@app.command(
    epilog=_examples(
        "depdet predict clip.mp4 --checkpoint runs/mine/ --report report.html",
        "depdet predict videos/ -c runs/mine/checkpoint.pt --out results.csv --device cuda",
        "depdet predict --data features/ -c runs/mine/ --out results.json   (already extracted features)",
    )
)
def predict(
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            "-c",
            help="Checkpoint written by `depdet train`, or its run folder (its feature spec, preprocessing, calibration and threshold are used).",
        ),
    ],
    inputs: Annotated[
        list[Path] | None, typer.Argument(help="Video files, folders (recursive) or .txt lists of paths.")
    ] = None,
    results: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write all results to this .csv or .json file.")
    ] = None,
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Write a self-contained HTML report (plots per clip, summary for a batch)."),
    ] = None,
    features: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            "--features",
            help="Predict from a feature folder (`depdet extract` output) instead of raw videos (--features: the old spelling).",
        ),
    ] = None,
    vggish_weights: Annotated[
        Path | None, typer.Option(help="VGGish checkpoint, for checkpoints trained on VGGish features.")
    ] = None,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            metavar=" ",
            help="Score clips that lack a stream (no audio track / no face) on what remains.",
        ),
    ] = False,
    device: Annotated[
        str, typer.Option(parser=_device, metavar="DEVICE", help=f"Where the model and VGGish run: {_DEVICE_HELP}.")
    ] = "auto",
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="CPU threads for torch (default: depdet's, the cores available less the load; see `depdet info`).",
        ),
    ] = None,
    evidence: Annotated[
        bool, typer.Option(metavar=" ", help="Compute the evidence timeline and modality shares.")
    ] = True,
    window: Annotated[
        float | None,
        typer.Option(
            help="Occlusion window in seconds (default: 1 s, widened on long clips to cap the windows scored, one forward pass each; smaller is finer and slower).",
            min=0.001,
        ),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle", metavar=" ", help="Allow scikit-learn checkpoints (pickled: only files you trust)."
        ),
    ] = False,
    id_from: Annotated[
        IdFrom,
        typer.Option(
            help="Clip ids from the file stem, or from the relative path as given (p01/video.mp4 -> p01_video), the rule of `depdet extract`."
        ),
    ] = "stem",
    conformal_level: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=0.999,
            help="Coverage of each clip's split-conformal prediction set, calibrated on the checkpoint's validation (or out-of-fold) predictions; a set holding both outcomes makes the result indeterminate.",
        ),
    ] = 0.9,
):
    """Screening probability, evidence and report for videos (research use, not a diagnosis)."""
    from depdet import api
    from depdet.pipeline.inference.predict import write_results
    from depdet.pipeline.reports.predict_report import write_report

    if not inputs and features is None:
        raise DepdetError("nothing to predict", hint="give video files/folders or --data DIR")
    checkpoint = _checkpoint_path(checkpoint)
    thread_policy.configure(threads)
    if results is not None and results.suffix.lower() not in (".csv", ".json"):
        raise DepdetError(
            f"unsupported results format {results.suffix!r}", path=results, hint="use a .csv or .json file name"
        )
    if results is not None:
        _check_output(results, "results file (--out)")
    if report_path is not None:
        _check_output(report_path, "report (--report)")
    with console.status("predicting...") as status:

        def on_result(r):
            status.update(f"predicting... last: {plain(r.sample_id)} ({r.status}, {r.seconds:.1f}s)")

        report = api.predict(
            inputs or None,
            checkpoint,
            data=features,
            allow_partial=allow_partial,
            vggish_weights=vggish_weights,
            device=device,
            evidence=evidence,
            window=window,
            trust_pickle=trust_pickle,
            id_from=id_from,
            conformal_level=conformal_level,
            on_result=on_result,
        )
    # results first: a failure while printing can never lose them
    if results is not None:
        write_results(results, report)
    if report_path is not None:
        write_report(report_path, report)
    show.print_predictions(report)
    if results is not None:
        console.print(f"results: {plain(results)}", highlight=False)
    if report_path is not None:
        console.print(f"report: {plain(report_path)}", highlight=False)
    if report.failed:  # one red line + exit 1 through main()
        raise DepdetError(
            f"{len(report.failed)} of {len(report.results)} input(s) failed", hint="see the failures listed above"
        )


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the demo's data, model, clip, results and report.")
    ] = Path("depdet-demo"),
    clip: Annotated[
        Path | None, typer.Option(help="Predict on this video instead of the generated drawn-face clip.")
    ] = None,
    model: Annotated[
        DemoModel,
        typer.Option(help="Small model to train (jamfn: own attention/gates; fusion_concat: occlusion evidence)."),
    ] = "jamfn",
    samples: Annotated[int, typer.Option(help="Synthetic samples.", min=12)] = 160,
    epochs: Annotated[int, typer.Option(help="Training epochs.", min=1)] = 15,
    clip_seconds: Annotated[float, typer.Option(help="Length of the generated clip (s).", min=1.0)] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed for data, training and clip.")] = 0,
    overwrite: Annotated[bool, typer.Option(metavar=" ", help="Replace a previous demo's outputs in --out.")] = False,
):
    """End-to-end DEMONSTRATION on synthetic data (no clinical meaning): synth -> train -> predict -> report.
    With the defaults it takes a few minutes on a laptop CPU (about 3 CPU-minutes, mostly training;
    longer on a busy machine)."""
    from depdet.pipeline.demo.run import DEMO_NOTICE, DemoConfig, run_demo

    if TYPE_CHECKING:
        from depdet.pipeline.inference.predict import PredictReport

    console.print(f"[bold blue]{DEMO_NOTICE}[/]", highlight=False)
    thread_policy.configure(None)
    console.print(
        "[dim]With the defaults this takes a few minutes on a laptop CPU (about 3 CPU-minutes, most of "
        "them training); longer on a busy machine.[/]",
        highlight=False,
    )
    cfg = DemoConfig(model=model, n=samples, epochs=epochs, clip_seconds=clip_seconds, seed=seed)
    res = run_demo(out_dir, cfg, clip=clip, overwrite=overwrite, log=lambda s: console.print(plain(s), highlight=False))
    show.print_demo(res, DEMO_NOTICE)
    if cast("PredictReport", res.predict_report).failed:  # DemoResult types the field as object
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
