"""Self-contained HTML screening report: one file, plots embedded as base64 PNG (matplotlib Agg).

Per clip: the calibrated probability against the checkpoint's threshold, warnings, and three plots:
the evidence timeline (attention share or occlusion effect per second), each modality's share, and
the feature coverage per second (face found / audio present). A batch (more than one clip, or any
failure) starts with a summary: a table of all clips, a probability chart and the failures. The
disclaimer (:data:`depdet.SCREENING_DISCLAIMER`) heads the page; demonstration runs say so in a
banner.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from depdet import SCREENING_DISCLAIMER
from depdet import fileio as dio
from depdet.pipeline.reports.figures import png, pyplot

_COLORS = {"visual": "#4C72B0", "audio": "#DD8452"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1000px;color:#222}
.disclaimer{background:#fff4e5;border:1px solid #f0b429;padding:.8em 1em;border-radius:6px}
.demo{background:#e8f0fe;border:1px solid #4c72b0;padding:.8em 1em;border-radius:6px;margin-top:.6em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}.above{color:#a33;font-weight:600}.below{color:#2a6;font-weight:600}.indeterminate{color:#a60;font-weight:600}
.warn{color:#a60}.fail{color:#a33}section.clip{border-top:2px solid #ddd;margin-top:2em;padding-top:1em}
img{max-width:100%}.muted{color:#666;font-size:.9em}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def plot_timeline(evidence, title: str = "") -> bytes:
    """Bar plot of the per-second evidence timeline; returns PNG bytes."""
    plt = pyplot()
    v = np.asarray(evidence.timeline, dtype=float)
    fig, ax = plt.subplots(figsize=(9, 2.6))
    x = np.arange(len(v))
    if evidence.timeline_method == "occlusion":
        ax.bar(x, v, width=1.0, align="edge", color=np.where(v >= 0, "#c44e52", "#55a868"))
        ax.axhline(0, color="#444", lw=0.8)
        ax.set_ylabel("Δ probability")
    else:
        ax.bar(x, v, width=1.0, align="edge", color="#8172b2")
        ax.set_ylabel("attention share")
    ax.set_xlim(0, max(1, len(v)))
    ax.set_xlabel("time (s)")
    ax.set_title(title or f"Evidence timeline ({evidence.timeline_method})", fontsize=10)
    return png(fig)


def plot_modality_shares(evidence) -> bytes:
    """Horizontal bars of each modality's share; returns PNG bytes."""
    plt = pyplot()
    names = list(evidence.modality_shares)
    vals = [evidence.modality_shares[n] for n in names]
    fig, ax = plt.subplots(figsize=(5, 0.6 + 0.5 * len(names)))
    ax.barh(names, [0 if v is None else v for v in vals], color=[_COLORS.get(n, "#777") for n in names])
    for i, v in enumerate(vals):
        ax.text(0.01 if v is None else min(v, 0.85) + 0.01, i, "undefined" if v is None else f"{v:.0%}", va="center")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title(f"Modality shares ({evidence.modality_method})", fontsize=10)
    return png(fig)


def plot_coverage(evidence) -> bytes:
    """One strip per modality: fraction of valid rows in each second (dark = missing); PNG bytes."""
    plt = pyplot()
    names = list(evidence.coverage)
    S = max((len(v) for v in evidence.coverage.values()), default=0)
    grid = np.zeros((len(names), max(S, 1)))
    for i, n in enumerate(names):
        c = np.asarray(evidence.coverage[n], dtype=float)
        grid[i, : len(c)] = c
    fig, ax = plt.subplots(figsize=(9, 0.7 + 0.45 * len(names)))
    im = ax.imshow(
        grid,
        aspect="auto",
        cmap="Greens",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(0, max(S, 1), len(names) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(names)), [f"{n} ({float(np.mean(evidence.coverage[n])) if S else 0:.0%})" for n in names])
    ax.set_xlabel("time (s)")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="valid")
    ax.set_title("Feature coverage per second (visual: face found; audio: features present)", fontsize=10)
    return png(fig)


def plot_batch(results, threshold: float | None) -> bytes:
    """Probability of every successful clip with the threshold line; returns PNG bytes."""
    plt = pyplot()
    ok = [r for r in results if r.status == "ok"]
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.28 * max(1, len(ok))))
    ids = [r.sample_id for r in ok]
    ps = [r.probability for r in ok]
    ax.barh(ids, ps, color=["#c44e52" if r.above else "#55a868" for r in ok])
    if threshold is not None:
        ax.axvline(threshold, color="#222", ls="--", lw=1, label=f"threshold {threshold:.2f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("calibrated probability")
    ax.set_title("Screening probabilities (research use, not a diagnosis)", fontsize=10)
    return png(fig)


def _fmt(v, pct=False):
    if v is None:
        return "–"
    return f"{v:.0%}" if pct else f"{v:.3f}"


def _uncertainty_rows(r) -> str:
    """Table rows: the probability interval and the conformal set, with their methods."""
    e, u = html.escape, r.uncertainty
    if u is None or (u.interval is None and u.prediction_set is None):
        return "<tr><th>uncertainty</th><td>not available (the checkpoint records no calibration set)</td></tr>"
    out = ""
    if u.interval is not None:
        out += (
            f"<tr><th>probability interval</th><td>[{_fmt(u.interval[0])}, {_fmt(u.interval[1])}] "
            f'<span class="muted">({e(u.method or "")}'
            + (f", {u.n_calibration} calibration clips" if u.n_calibration else "")
            + (f", {len(u.members)} models" if u.members and len(u.members) > 1 else "")
            + ")</span></td></tr>"
        )
    if u.prediction_set is not None:
        names = {0: "below", 1: "above"}
        words = " and ".join(names[k] for k in u.prediction_set) or "neither (an atypical clip)"
        out += (
            f"<tr><th>conformal set ({u.level:.0%})</th><td>{e(words)} "
            f'<span class="muted">(split-conformal on {e(r.calibration_source or "validation")} predictions; '
            "both outcomes: indeterminate)</span></td></tr>"
        )
    return out


def _clip_section(r) -> str:
    e = html.escape
    parts = [
        f'<section class="clip" id="clip-{e(r.sample_id)}"><h2>{e(r.sample_id)}</h2>',
        f'<p class="muted">{e(str(r.source))}</p>',
    ]
    if r.status != "ok":
        parts.append(f'<p class="fail">Failed: {e(r.error or "")}</p></section>')
        return "".join(parts)
    cls = r.decision or ""
    parts.append(
        "<table>"
        f"<tr><th>calibrated probability</th><td>{_fmt(r.probability)}</td></tr>"
        + _uncertainty_rows(r)
        + f"<tr><th>screening threshold</th><td>{_fmt(r.threshold)}</td></tr>"
        f'<tr><th>result</th><td class="{cls}">{e(r.screening)}</td></tr>'
        f"<tr><th>duration</th><td>{'–' if r.duration is None else f'{r.duration:.1f} s'} ({r.rows} rows)</td></tr>"
        f"<tr><th>face coverage</th><td>{_fmt(r.face_coverage, True)} of sampled frames with a face found</td></tr>"
        f"<tr><th>speech coverage</th><td>{_fmt(r.speech_coverage, True)} of rows with voice activity "
        "(short-time energy, an indicator, not a speech detector)</td></tr></table>"
    )
    dist = r.checks or {}
    far = {m: v for m, v in dist.items() if isinstance(v, dict) and "frac_beyond" in v}
    if far:
        parts.append(
            '<p class="muted">Distance from the training data (valid rows, in training standard deviations): '
            + "; ".join(
                f"{e(m)} mean |z| {v['mean_abs_z']:.2f}, {v['frac_beyond']:.1%} beyond {dist['thresholds']['z']:g} SD"
                for m, v in far.items()
            )
            + (". <strong>Saturated output.</strong>" if dist.get("saturated") else ".")
            + "</p>"
        )
    if r.warnings:
        parts.append("<ul>" + "".join(f'<li class="warn">{e(w)}</li>' for w in r.warnings) + "</ul>")
    ev = r.evidence
    if ev is not None:
        parts.append(f'<h3>Evidence timeline</h3><p class="muted">{e(ev.timeline_unit)}.</p>')
        parts.append(_img(plot_timeline(ev), f"evidence timeline for {r.sample_id}"))
        eff = ""
        if ev.modality_effects:
            eff = (
                " Logit change when masked out: "
                + ", ".join(f"{k} {v:+.3f}" for k, v in ev.modality_effects.items())
                + "."
            )
        how = (
            "the model's own modality weights"
            if ev.modality_method == "model_weights"
            else "each modality masked out in turn, share of the absolute change in the calibrated logit"
        )
        parts.append(f'<h3>Modality shares</h3><p class="muted">From {e(how)}.{e(eff)}</p>')
        parts.append(_img(plot_modality_shares(ev), f"modality shares for {r.sample_id}"))
        parts.append(
            '<h3>Feature coverage</h3><p class="muted">Per second, the fraction of rows whose features are '
            "valid: visual, a face was found in the sampled frame; audio, the audio track covers the row "
            "and its features could be computed (silence counts as covered, unlike speech coverage above)."
            "</p>"
        )
        parts.append(_img(plot_coverage(ev), f"feature coverage for {r.sample_id}"))
    else:
        parts.append('<p class="muted">No evidence computed for this clip.</p>')
    parts.append("</section>")
    return "".join(parts)


def render_report(report) -> str:
    """HTML text for a :class:`~depdet.pipeline.inference.predict.PredictReport`."""
    e = html.escape
    ck = report.checkpoint
    results = report.results
    head = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>depdet screening report</title>'
        f"<style>{_CSS}</style></head><body>",
        "<h1>depdet screening report</h1>",
        f'<p class="disclaimer"><strong>{e(SCREENING_DISCLAIMER)}</strong></p>',
    ]
    if report.demonstration:
        head.append(
            '<p class="demo"><strong>DEMONSTRATION</strong>: a small model trained for a few epochs on '
            "synthetic data; these numbers have no clinical or scientific meaning.</p>"
        )
    elif ck.get("synthetic_training_data"):
        head.append(
            '<p class="demo"><strong>SYNTHETIC TRAINING DATA</strong>: this checkpoint was trained on '
            "synthetic random arrays; its probabilities mean nothing.</p>"
        )
    spec = ck.get("spec", {})
    head.append(
        f'<p class="muted">Model <code>{e(str(ck.get("model")))}</code> from <code>{e(str(ck.get("path")))}</code>; '
        f"features: visual={e('+'.join(spec.get('visual', [])))}, audio={e('+'.join(spec.get('audio', [])))}, "
        f"{spec.get('fps', '?')} rows/s; calibration temperature {ck.get('temperature', 1.0):.3f}, "
        f"threshold {ck.get('threshold', float('nan')):.3f} (both fitted on {e(ck.get('calibrated_on') or 'the validation split')}).</p>"
    )
    tr = ck.get("training") or {}
    if tr:
        sizes = tr.get("split_sizes") or {}
        test, base = tr.get("test") or {}, tr.get("test_baseline_all_depressed") or {}
        what = (
            f"trained on <code>{e(str(tr.get('dataset')))}</code>"
            + (" (SYNTHETIC)" if tr.get("synthetic") else "")
            + (
                f", {tr['n_clips']} clips (" + ", ".join(f"{e(str(k))} {v}" for k, v in sizes.items()) + ")"
                if tr.get("n_clips")
                else ""
            )
            + (f", recipe <code>{e(str(tr['preset']))}</code>" if tr.get("preset") else ", no preset")
            + (f", seed {tr['seed']}" if tr.get("seed") is not None else "")
        )
        if test:
            what += (
                f". Test split ({test.get('n', '?')} clips): F1 {_fmt(test.get('f1'))}, accuracy {_fmt(test.get('acc'))}, "
                f"ROC-AUC {_fmt(test.get('auc'))}; the all-depressed baseline on the same split: F1 "
                f"{_fmt(base.get('f1'))}, accuracy {_fmt(base.get('acc'))}"
            )
        elif tr.get("headline"):
            h, hb = tr["headline"], tr["headline"].get("baseline_all_depressed") or {}
            what += (
                f". Pooled out-of-fold ({h.get('n', '?')} predictions, each clip scored by a fold model that never "
                f"saw it): F1 {_fmt(h.get('f1'))}, accuracy {_fmt(h.get('acc'))}, ROC-AUC {_fmt(h.get('auc'))}; "
                f"the all-depressed baseline on the same predictions: F1 {_fmt(hb.get('f1'))}, accuracy "
                f"{_fmt(hb.get('acc'))}"
            )
        else:
            what += ". No test split was evaluated"
        head.append(f'<p class="muted">Checkpoint {what}.</p>')
    body = []
    batch = len(results) > 1 or any(r.status != "ok" for r in results)
    if batch:
        n_fail = sum(r.status != "ok" for r in results)
        body.append(f"<h2>Summary</h2><p>{len(results)} clip(s), {len(results) - n_fail} scored, {n_fail} failed.</p>")
        rows = []
        for r in results:
            if r.status == "ok":
                cls = r.decision or ""
                iv = r.uncertainty.interval if r.uncertainty is not None else None
                rows.append(
                    f'<tr><td><a href="#clip-{e(r.sample_id)}">{e(r.sample_id)}</a></td>'
                    f"<td>{_fmt(r.probability)}{'' if iv is None else f' [{iv[0]:.2f}, {iv[1]:.2f}]'}</td>"
                    f'<td class="{cls}">{e(r.screening)}</td>'
                    f"<td>{_fmt(r.face_coverage, True)}</td><td>{_fmt(r.speech_coverage, True)}</td>"
                    f"<td>{len(r.warnings)}</td></tr>"
                )
            else:
                rows.append(
                    f'<tr><td>{e(r.sample_id)}</td><td colspan="5" class="fail">failed: {e(r.error or "")}</td></tr>'
                )
        body.append(
            "<table><tr><th>clip</th><th>probability [interval]</th><th>result</th><th>face</th><th>speech</th>"
            "<th>warnings</th></tr>" + "".join(rows) + "</table>"
        )
        if any(r.status == "ok" for r in results):
            body.append(_img(plot_batch(results, ck.get("threshold")), "probabilities of all clips"))
    body += [_clip_section(r) for r in results]
    foot = f'<hr><p class="muted">{e(SCREENING_DISCLAIMER)}</p></body></html>'
    return "".join(head + body) + foot


def write_report(path: str | Path, report) -> Path:
    """Write the HTML report atomically and return its path."""
    path = Path(path)
    dio.write_text(path, render_report(report))
    return path
