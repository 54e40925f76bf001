"""``depdet report RUN -o report.html|report.md``: one run's results, ready for a supplement.

Sections: run summary (model, preset, seeds, split, data fingerprint, depdet version and git
commit), the preset's note, test metrics with 95% intervals beside the all-depressed baseline, ROC
and precision-recall curves, calibration (reliability plot, Brier score, ECE), per-gender results,
a Markdown and a LaTeX table, and the screening disclaimer. Every number is recomputed from the
run's per-clip test predictions (:mod:`.runs`) with :mod:`depdet.pipeline.training.stats`.

HTML is one self-contained file (figures inline as base64 PNG, matplotlib Agg). Markdown writes the
figures as PNG files into ``<stem>_figures/`` beside the ``.md`` file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from depdet import SCREENING_DISCLAIMER, __version__
from depdet import fileio as dio
from depdet.pipeline.reports.figures import png, pyplot
from depdet.pipeline.reports.runs import RunData, load_run
from depdet.pipeline.training.stats import (
    ECE_BINS,
    bootstrap_ci,
    expected_calibration_error,
    reliability_table,
    summarize,
    summarize_baseline,
    summarize_groups,
)

#: (key, label) of the metrics table, in order.
ROWS = (
    ("acc", "Accuracy"),
    ("precision", "Precision (depressed)"),
    ("recall", "Recall / sensitivity"),
    ("specificity", "Specificity"),
    ("f1", "F1 (depressed, binary)"),
    ("weighted_f1", "Weighted F1"),
    ("macro_f1", "Macro F1"),
    ("auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC (average precision)"),
    ("brier", "Brier score"),
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
.disclaimer{background:#fff4e5;border:1px solid #f0b429;padding:.8em 1em;border-radius:6px}
.synthetic{background:#e8f0fe;border:1px solid #4c72b0;padding:.8em 1em;border-radius:6px;margin-top:.6em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#555;font-size:.9em}pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs img{max-width:48%}img{max-width:100%}
.wide{overflow-x:auto}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
"""


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return f"{v:.{digits}f}"


def _with_ci(m: dict, key: str, digits: int = 3, sep: str = " ") -> str:
    """``0.700 [0.640, 0.760]`` (no interval: the point alone; no value: a dash); ``sep`` before the interval."""
    if key not in m:
        return "–"
    ci = (m.get("ci95") or {}).get(key)
    text = _num(m.get(key), digits)
    return text + (f"{sep}[{_num(ci[0], digits)}, {_num(ci[1], digits)}]" if ci and text != "–" else "")


# ----------------------------------------------------------------------------- numbers


def build(run: RunData, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Every number of the report (JSON-able apart from ``run``)."""
    y, p, groups = run.y, run.mean_prob, run.groups
    rep: dict = {"run": run, "n_boot": n_boot, "seed": seed}
    rep["metrics"] = summarize(y, p, 0.5, groups=groups, n_boot=n_boot, seed=seed)
    rep["baseline"] = summarize_baseline(y, groups=groups, n_boot=n_boot, seed=seed)
    if len(run.seeds) > 1:
        per = [summarize(y, run.prob[j], 0.5, n_boot=0) for j in range(len(run.seeds))]
        rep["per_seed"] = [{"seed": s, **{k: m.get(k) for k, _ in ROWS}} for s, m in zip(run.seeds, per)]
    cal: dict[str, dict[str, Any]] = {"uncalibrated": {"label": "sigmoid(logit) (the papers' probability)", "prob": p}}
    p_calibrated = run.mean_prob_calibrated  # None when the run's files lack calibrated probabilities
    if p_calibrated is not None:
        cal["calibrated"] = {
            "label": "temperature-scaled (temperature fitted on each run's validation fold)",
            "prob": p_calibrated,
        }
    for c in cal.values():
        ci, _ = bootstrap_ci(y, c["prob"], groups=groups, n_boot=n_boot, seed=seed, metrics=("brier",))
        c.update(
            brier=float(np.mean((c["prob"] - y) ** 2)),
            brier_ci=ci["brier"],
            ece=expected_calibration_error(y, c["prob"]),
            reliability=reliability_table(y, c["prob"]),
        )
    rep["calibration"] = cal
    rep["per_gender"] = summarize_groups(y, p, run.gender, groups=groups, n_boot=n_boot, seed=seed)
    return rep


# ----------------------------------------------------------------------------- figures


def figures(rep: dict) -> dict[str, bytes]:
    """PNG bytes of the ROC curve, the precision-recall curve and the reliability plot."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = pyplot()
    run, m = rep["run"], rep["metrics"]
    y = run.y
    out = {}
    both = 0 < y.sum() < len(y)
    several = len(run.seeds) > 1
    main_label = "mean over seeds" if several else "model"
    # ROC
    fig, ax = plt.subplots(figsize=(4.6, 4.3))
    if both:
        if several:
            for j in range(len(run.seeds)):
                f, t, _ = roc_curve(y, run.prob[j])
                ax.plot(f, t, color="#4C72B0", alpha=0.25, lw=1, label="single seeds" if j == 0 else None)
        f, t, _ = roc_curve(y, run.mean_prob)
        ax.plot(f, t, color="#4C72B0", lw=2, label=f"{main_label} (AUC {m['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="#999", ls="--", lw=1, label="chance / all depressed (AUC 0.5)")
    ax.set_xlabel("1 − specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title("ROC curve, test clips", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    out["roc"] = png(fig, dpi=100)
    # PR
    fig, ax = plt.subplots(figsize=(4.6, 4.3))
    prev = float(y.mean()) if len(y) else 0.0
    if both:
        if several:
            for j in range(len(run.seeds)):
                pr, rc, _ = precision_recall_curve(y, run.prob[j])
                ax.step(
                    rc, pr, where="post", color="#DD8452", alpha=0.25, lw=1, label="single seeds" if j == 0 else None
                )
        pr, rc, _ = precision_recall_curve(y, run.mean_prob)
        ax.step(rc, pr, where="post", color="#DD8452", lw=2, label=f"{main_label} (AP {m['pr_auc']:.3f})")
    ax.axhline(prev, color="#999", ls="--", lw=1, label=f"prevalence {prev:.2f} (all depressed)")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall curve, test clips", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower left", fontsize=8)
    out["pr"] = png(fig, dpi=100)
    # reliability
    fig, (ax, hx) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="#999", ls="--", lw=1, label="perfect calibration")
    colors = {"uncalibrated": "#4C72B0", "calibrated": "#55A868"}
    width = 1.0 / ECE_BINS
    cal = rep["calibration"]
    for i, (name, c) in enumerate(cal.items()):
        rows = [r for r in c["reliability"] if r["n"]]
        ax.plot(
            [r["mean_probability"] for r in rows],
            [r["fraction_positive"] for r in rows],
            marker="o",
            color=colors[name],
            label=f"{name} (ECE {c['ece']:.3f})",
        )
        lo = np.array([r["lo"] for r in c["reliability"]])
        hx.bar(
            lo + width * (0.1 + 0.4 * i),
            [r["n"] for r in c["reliability"]],
            width=width * 0.4,
            align="edge",
            color=colors[name],
            alpha=0.8,
        )
    ax.set_ylabel("fraction depressed")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Reliability ({ECE_BINS} equal-width bins), test clips", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    hx.set_xlabel("predicted probability")
    hx.set_ylabel("clips")
    hx.set_xlim(0, 1)
    out["calibration"] = png(fig, dpi=100)
    return out


# ----------------------------------------------------------------------------- tables


def markdown_table(rep: dict) -> str:
    """The metrics beside the all-depressed baseline as a Markdown table."""
    m, b, run = rep["metrics"], rep["baseline"], rep["run"]
    what = (
        "mean probability over seeds " + ", ".join(map(str, run.seeds))
        if len(run.seeds) > 1
        else f"seed {run.seeds[0]}"
    )
    lines = [f"| Metric | {run.model} ({what}) | All depressed |", "|---|---:|---:|"]
    lines += [f"| {label} | {_with_ci(m, k)} | {_with_ci(b, k) if k in b else '–'} |" for k, label in ROWS]
    lines.append("")
    lines.append(
        f"Test set: {len(run.y)} clips, {int(run.y.sum())} depressed. Values with 95% percentile bootstrap "
        f"intervals ({rep['n_boot']:,} resamples of the {m['bootstrap']['unit']}s, seed {rep['seed']}); "
        "decision at probability 0.5 (logit > 0)."
    )
    return "\n".join(lines)


def _tex(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\textasciicircum{}"),
    ):
        s = s.replace(a, b) if a != "\\" else s.replace(a, "\x00")
    return s.replace("\x00", r"\textbackslash{}")


def latex_table(rep: dict) -> str:
    """The same table for LaTeX (booktabs)."""
    m, b, run = rep["metrics"], rep["baseline"], rep["run"]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{lrr}",
        r"\toprule",
        f"Metric & {_tex(run.model)} & All depressed \\\\",
        r"\midrule",
    ]
    lines += [f"{_tex(label)} & {_with_ci(m, k)} & {_with_ci(b, k) if k in b else '--'} \\\\" for k, label in ROWS]
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        (
            f"\\caption{{Test set: {len(run.y)} clips, {int(run.y.sum())} depressed. 95\\% percentile bootstrap "
            f"intervals ({rep['n_boot']} resamples). Decision at probability 0.5.}}"
        ),
        r"\end{table}",
    ]
    return "\n".join(lines).replace("–", "--")


# ----------------------------------------------------------------------------- run summary


def _summary_rows(run: RunData) -> list[tuple[str, str]]:
    cfg, data, env = run.train_config, run.data, run.env
    fp = data.get("fingerprint") or {}
    samples = fp.get("samples") or []
    folds: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for s in samples:
        folds[s.get("fold") or "-"] = folds.get(s.get("fold") or "-", 0) + 1
        for how in (s.get("sha256_of") or {}).values():
            kinds[how] = kinds.get(how, 0) + 1
    git = env.get("git") or {}
    rows = [
        ("model", run.model),
        ("preset", run.preset or "none (options given on the command line)"),
        (
            "seeds",
            ", ".join(map(str, run.seeds))
            + (" (headline: per-clip mean probability over the seeds)" if len(run.seeds) > 1 else ""),
        ),
        (
            "split",
            ("stratified {}-fold cross-validation (each clip tested once per seed)".format(cfg["folds"]))
            if cfg.get("folds")
            else "the dataset's own folds",
        ),
        ("split sizes", _split_sizes(run.data.get("splits") or {})),
        ("test clips", f"{len(run.y)} ({int(run.y.sum())} depressed, prevalence {run.y.mean():.3f})"),
        ("genders (test)", ", ".join(f"{g or '?'}: {run.gender.count(g)}" for g in sorted(set(run.gender)))),
        (
            "predictions from",
            run.source
            + (
                " (pooled out-of-fold: each clip scored by the fold model that never saw it)"
                if run.source == "oof_predictions.csv"
                else ""
            ),
        ),
        (
            "dataset",
            f"{data.get('path', '?')} ({data.get('layout', '?')} layout)"
            + (" — SYNTHETIC" if data.get("synthetic") else ""),
        ),
        (
            "data fingerprint",
            (
                f"{fp.get('n', len(samples))} samples, SHA-256 {str(fp.get('sha256', '?'))[:16]}…; folds "
                + ", ".join(f"{k} {v}" for k, v in sorted(folds.items()))
                + "; feature hashes of "
                + ", ".join(f"{k} ({v})" for k, v in sorted(kinds.items()))
            )
            if fp
            else "– (no data.json)",
        ),
        ("selection / threshold", f"{cfg.get('select', '?')} on valid / {cfg.get('threshold_method', '?')}"),
        (
            "depdet",
            f"{env.get('depdet', (run.config or {}).get('depdet_version', '?'))}"
            + (
                f", git {str(git.get('commit'))[:12]}{' (uncommitted changes)' if git.get('dirty') else ''}"
                if git.get("commit")
                else ""
            ),
        ),
        ("report made by", f"depdet {__version__}"),
    ]
    return rows


# ----------------------------------------------------------------------------- HTML / Markdown


def _metrics_html(rep: dict) -> str:
    m, b = rep["metrics"], rep["baseline"]
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td class=num>{_with_ci(m, k)}</td>"
        f"<td class=num>{_with_ci(b, k) if k in b else '–'}</td></tr>"
        for k, label in ROWS
    )
    ops = "".join(
        f"<tr><td>{html.escape(lbl)} {t}</td><td class=num>{_num(m[key][t])}</td></tr>"
        for key, lbl in (
            ("sensitivity_at_specificity", "sensitivity at specificity ≥"),
            ("specificity_at_sensitivity", "specificity at sensitivity ≥"),
        )
        for t in m.get(key, {})
    )
    (tn, fp), (fn, tp) = m["confusion"]
    return (
        f"<table><tr><th>metric</th><th>model [95% CI]</th><th>all depressed [95% CI]</th></tr>{rows}</table>"
        f"<p class=muted>Confusion at 0.5: TN {tn}, FP {fp}, FN {fn}, TP {tp}. Intervals: percentile bootstrap, "
        f"{rep['n_boot']:,} resamples of the {m['bootstrap']['unit']}s (seed {rep['seed']}); "
        f"{m['bootstrap']['n_one_class']} resample(s) with one class only were dropped. The all-depressed rule "
        "calls every clip depressed: its recall is 1 and its ROC-AUC 0.5 by definition.</p>"
        "<h3>Screening operating points</h3><table><tr><th>operating point</th><th>value</th></tr>"
        f"{ops}</table><p class=muted>Read off this test set's own ROC curve (the best point meeting the "
        "target): they describe these clips and are optimistic for a threshold fixed in advance.</p>"
    )


def _per_seed_html(rep: dict) -> str:
    per = rep.get("per_seed")
    if not per:
        return ""
    keys = ("acc", "f1", "weighted_f1", "auc", "pr_auc", "brier")
    head = "".join(f"<th>{html.escape(dict(ROWS)[k])}</th>" for k in keys)
    rows = "".join(
        f"<tr><td>{r['seed']}</td>" + "".join(f"<td class=num>{_num(r[k])}</td>" for k in keys) + "</tr>" for r in per
    )
    mean = "".join(
        f"<td class=num>{_num(float(np.nanmean([r[k] for r in per])))} ± "
        f"{_num(float(np.nanstd([r[k] for r in per], ddof=1)))}</td>"
        for k in keys
    )
    return (
        f"<h3>Single seeds</h3><table><tr><th>seed</th>{head}</tr>{rows}<tr><td>mean ± SD</td>{mean}</tr></table>"
        "<p class=muted>Each seed's own predictions at 0.5; the headline table above scores the per-clip mean "
        "probability over the seeds.</p>"
    )


def _calibration_html(rep: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(c['label'])}</td>"
        f"<td class=num>{_num(c['brier'])}"
        + (f" [{_num(c['brier_ci'][0])}, {_num(c['brier_ci'][1])}]" if c["brier_ci"] else "")
        + f"</td><td class=num>{_num(c['ece'])}</td></tr>"
        for n, c in rep["calibration"].items()
    )
    rel = []
    for n, c in rep["calibration"].items():
        cells = "".join(
            f"<tr><td>{r['lo']:.1f}–{r['hi']:.1f}</td><td class=num>{r['n']}</td>"
            f"<td class=num>{_num(r['mean_probability'])}</td><td class=num>{_num(r['fraction_positive'])}</td></tr>"
            for r in c["reliability"]
        )
        rel.append(
            f"<details><summary>Reliability table, {html.escape(n)}</summary><table><tr><th>bin</th><th>clips</th>"
            f"<th>mean probability</th><th>fraction depressed</th></tr>{cells}</table></details>"
        )
    return (
        f"<table><tr><th>probabilities</th><th>what</th><th>Brier score [95% CI]</th><th>ECE ({ECE_BINS} bins)</th></tr>"
        f"{rows}</table><p class=muted>Brier score: mean squared difference between probability and label (lower "
        "is better; always answering the prevalence scores prevalence × (1 − prevalence) = "
        f"{_num(float(rep['run'].y.mean() * (1 - rep['run'].y.mean())))}). ECE: the clip-weighted mean gap between "
        f"mean probability and fraction depressed over {ECE_BINS} equal-width bins (depdet's binning).</p>"
        + "".join(rel)
    )


def _gender_html(rep: dict) -> str:
    per = rep["per_gender"]
    if not per:
        return "<p>No gender is recorded for the test clips.</p>"
    keys = ("acc", "recall", "specificity", "f1", "weighted_f1", "auc")
    head = "".join(f"<th>{html.escape(dict(ROWS)[k])}</th>" for k in keys)
    rows = ""
    for g, m in per.items():
        rows += (
            f"<tr><td>{html.escape(g)} (n={m['n']}, {m['n_pos']} depressed)</td>"
            + "".join(f"<td class=num>{_with_ci(m, k, sep='<br>')}</td>" for k in keys)
            + "</tr>"
        )
        b = m["baseline"]
        rows += (
            "<tr class=muted><td>&nbsp;&nbsp;all depressed</td>"
            + "".join(f"<td class=num>{_with_ci(b, k, sep='<br>') if k in b else '–'}</td>" for k in keys)
            + "</tr>"
        )
    return (
        f"<div class=wide><table><tr><th>gender</th>{head}</tr>{rows}</table></div><p class=muted>Intervals are "
        "wide on small "
        "groups; a difference between genders needs its own test.</p>"
    )


def render_html(rep: dict, figs: dict[str, bytes]) -> str:
    run = rep["run"]
    e = html.escape

    def img(key, alt):
        return f'<img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(figs[key]).decode()}">'

    note = (run.config or {}).get("preset_note") or ""
    parts = [
        (
            f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>depdet results: {e(run.name)}</title>"
            f"<style>{_CSS}</style></head><body>"
        ),
        f"<h1>Results: {e(run.name)}</h1>",
        f'<p class="disclaimer"><strong>{e(SCREENING_DISCLAIMER)}</strong></p>',
    ]
    if run.data.get("synthetic"):
        parts.append(
            '<p class="synthetic"><strong>SYNTHETIC DATA</strong>: this run was trained and tested on '
            "depdet synth arrays; its numbers say nothing about depression.</p>"
        )
    parts.append(
        "<h2>Run</h2><table>"
        + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary_rows(run))
        + "</table>"
    )
    parts.append(
        f"<details><summary>Full training configuration (config.json)</summary><pre>"
        f"{e(json.dumps(run.train_config, indent=1, sort_keys=True))}</pre></details>"
    )
    parts.append(
        "<h2>Preset note</h2>"
        + (f"<p>{e(note)}</p>" if note else "<p>No preset: the options above are the user's own.</p>")
    )
    parts.append("<h2>Test metrics</h2>" + _metrics_html(rep) + _per_seed_html(rep))
    parts.append(
        "<h2>ROC and precision-recall curves</h2><div class=figs>"
        + img("roc", "ROC curve")
        + img("pr", "precision-recall curve")
        + "</div>"
    )
    parts.append("<h2>Calibration</h2>" + img("calibration", "reliability plot") + _calibration_html(rep))
    parts.append("<h2>Per gender</h2>" + _gender_html(rep))
    parts.append(
        "<h2>Tables for the paper</h2><h3>Markdown</h3><pre>" + e(markdown_table(rep)) + "</pre>"
        "<h3>LaTeX (booktabs)</h3><pre>" + e(latex_table(rep)) + "</pre>"
    )
    parts.append(
        f'<hr><p class="muted">{e(SCREENING_DISCLAIMER)} Made by depdet {e(__version__)} from '
        f"{e(str(run.path))}.</p></body></html>"
    )
    return "".join(parts)


def render_markdown(rep: dict, fig_dir: str) -> str:
    run = rep["run"]
    m = rep["metrics"]
    note = (run.config or {}).get("preset_note") or "No preset: the options are the user's own."
    lines = [f"# Results: {run.name}", "", f"> **{SCREENING_DISCLAIMER}**", ""]
    if run.data.get("synthetic"):
        lines += [
            (
                "> **SYNTHETIC DATA**: trained and tested on depdet synth arrays; the numbers say nothing about "
                "depression."
            ),
            "",
        ]
    lines += ["## Run", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in _summary_rows(run)]
    lines += [
        "",
        "## Preset note",
        "",
        note,
        "",
        "## Test metrics",
        "",
        markdown_table(rep),
        "",
        "Screening operating points (read off this test set's ROC curve; optimistic for a threshold fixed in "
        "advance): "
        + "; ".join(
            f"{lbl} {t}: {_num(m[key][t])}"
            for key, lbl in (
                ("sensitivity_at_specificity", "sensitivity at specificity ≥"),
                ("specificity_at_sensitivity", "specificity at sensitivity ≥"),
            )
            for t in m.get(key, {})
        )
        + ".",
        "",
    ]
    if rep.get("per_seed"):
        lines += [
            "Single seeds (each at 0.5): "
            + "; ".join(f"seed {r['seed']}: F1 {_num(r['f1'])}, ROC-AUC {_num(r['auc'])}" for r in rep["per_seed"])
            + ".",
            "",
        ]
    lines += [
        "## ROC and precision-recall curves",
        "",
        f"![ROC curve]({fig_dir}/roc.png) ![PR curve]({fig_dir}/pr.png)",
        "",
        "## Calibration",
        "",
        f"![Reliability plot]({fig_dir}/calibration.png)",
        "",
        "| probabilities | Brier score [95% CI] | ECE (10 bins) |",
        "|---|---:|---:|",
    ]
    for n, c in rep["calibration"].items():
        ci = f" [{_num(c['brier_ci'][0])}, {_num(c['brier_ci'][1])}]" if c["brier_ci"] else ""
        lines.append(f"| {n}: {c['label']} | {_num(c['brier'])}{ci} | {_num(c['ece'])} |")
    lines += ["", "## Per gender", ""]
    if rep["per_gender"]:
        lines += ["| gender | n | F1 | ROC-AUC | accuracy | all-depressed F1 |", "|---|---:|---:|---:|---:|---:|"]
        lines += [
            f"| {g} | {pm['n']} | {_with_ci(pm, 'f1')} | {_with_ci(pm, 'auc')} | {_with_ci(pm, 'acc')} | "
            f"{_with_ci(pm['baseline'], 'f1')} |"
            for g, pm in rep["per_gender"].items()
        ]
    else:
        lines.append("No gender is recorded for the test clips.")
    lines += [
        "",
        "## LaTeX table",
        "",
        "```latex",
        latex_table(rep),
        "```",
        "",
        "---",
        "",
        f"*{SCREENING_DISCLAIMER}* Made by depdet {__version__} from `{run.path}`.",
        "",
    ]
    return "\n".join(lines)


def write_run_report(run_path: str | Path, out: str | Path, *, n_boot: int = 2000, seed: int = 0) -> Path:
    """Write the report for the run folder ``run_path`` to ``out`` (``.html`` or ``.md``); returns the path."""
    out = Path(out)
    rep = build(load_run(run_path), n_boot=n_boot, seed=seed)
    figs = figures(rep)
    if out.suffix.lower() == ".md":
        fig_dir = out.with_name(f"{out.stem}_figures")
        fig_dir.mkdir(parents=True, exist_ok=True)
        for k, png in figs.items():
            dio.write_bytes(fig_dir / f"{k}.png", png)
        dio.write_text(out, render_markdown(rep, fig_dir.name))
    else:
        dio.write_text(out, render_html(rep, figs))
    return out


def _split_sizes(splits: dict) -> str:
    """data.json's per-run fold sizes in one line: the runs, and each fold's size (its range over the runs)."""
    if not splits:
        return "–"
    sizes = [v for v in splits.values() if isinstance(v, dict)]
    parts = []
    for fold in ("train", "valid", "test"):
        ns = [int(v[fold]) for v in sizes if fold in v]
        if ns:
            parts.append(f"{fold} {min(ns)}" if min(ns) == max(ns) else f"{fold} {min(ns)}–{max(ns)}")
    return f"{len(sizes)} run(s): " + ", ".join(parts)
