"""``depdet weights``, ``depdet models``, ``depdet presets`` and ``depdet synth``: what a run is built from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from depdet.commands.app import (
    Layout,
    _examples,
    app,
)
from depdet.errors import DepdetError
from depdet.pipeline.reports import console as show  # every table, summary and progress display
from depdet.pipeline.reports.console import console, out, plain
from depdet.pipeline.training.options import parse_dims, parse_model_opts

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
