"""``depdet train``, ``depdet evaluate``, ``depdet compare`` and ``depdet report``: runs and their results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from depdet import SCREENING_DISCLAIMER
from depdet import threads as thread_policy
from depdet.commands.app import (
    _DEVICE_HELP,
    _STATE,
    DataLayout,
    Fold,
    Gender,
    Optimizer,
    Preset,
    Scheduler,
    Select,
    ThresholdMethod,
    _check_cluster,
    _check_output,
    _checkpoint_path,
    _device,
    _examples,
    app,
)
from depdet.errors import DepdetError
from depdet.pipeline.reports import console as show  # every table, summary and progress display
from depdet.pipeline.reports.console import console, out, plain


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
