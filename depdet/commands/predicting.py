"""``depdet predict`` and ``depdet demo``: a checkpoint scores videos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from depdet import threads as thread_policy
from depdet.commands.app import (
    _DEVICE_HELP,
    DemoModel,
    IdFrom,
    _check_output,
    _checkpoint_path,
    _device,
    _examples,
    app,
)
from depdet.errors import DepdetError
from depdet.pipeline.reports import console as show  # every table, summary and progress display
from depdet.pipeline.reports.console import console, plain

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
    With the defaults it takes under a minute on a quiet CPU (about 33 s on 2 cores, mostly training;
    longer on a busy machine)."""
    from depdet.pipeline.demo.run import DEMO_NOTICE, DemoConfig, run_demo

    if TYPE_CHECKING:
        from depdet.pipeline.inference.predict import PredictReport

    console.print(f"[bold blue]{DEMO_NOTICE}[/]", highlight=False)
    thread_policy.configure(None)
    console.print(
        "[dim]With the defaults this takes under a minute on a quiet CPU (about 33 s on 2 cores, most of "
        "it training); longer on a busy machine.[/]",
        highlight=False,
    )
    cfg = DemoConfig(model=model, n=samples, epochs=epochs, clip_seconds=clip_seconds, seed=seed)
    res = run_demo(out_dir, cfg, clip=clip, overwrite=overwrite, log=lambda s: console.print(plain(s), highlight=False))
    show.print_demo(res, DEMO_NOTICE)
    if cast("PredictReport", res.predict_report).failed:  # DemoResult types the field as object
        raise DepdetError("the demo clip could not be scored", hint="see the failure listed above")
