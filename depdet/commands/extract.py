"""``depdet extract`` and ``depdet store index``: raw videos -> a feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from depdet import threads as thread_policy
from depdet.commands.app import (
    _DEVICE_HELP,
    Align,
    Detector,
    IdFrom,
    LandmarkNorm,
    Layout,
    Quantize,
    _check_cluster,
    _check_output,
    _cnn_note,
    _device,
    _examples,
    _layout_help,
    app,
)
from depdet.errors import DepdetError
from depdet.pipeline.reports import console as show  # every table, summary and progress display


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
