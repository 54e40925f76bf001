"""``depdet compare RUN RUN ...``: the runs' test metrics with 95% intervals, and paired tests.

Every number is recomputed from the runs' per-clip predictions (:mod:`.runs`). For each run: the
:func:`~depdet.pipeline.training.stats.summarize` metrics of its (seed-averaged) probabilities at
0.5. For each pair of runs: a paired bootstrap of the F1 difference (both runs on the same
resamples of the clips, or of the groups when the runs record them) and DeLong's test of the ROC-AUC
difference. Pairs must be tested on the same clips with the same labels (else a DataError); other
feature files or splits on those clips give warnings.
"""

from __future__ import annotations

from itertools import combinations

from depdet.errors import ConfigError
from depdet.pipeline.reports.runs import RunData, load_run, pair_check
from depdet.pipeline.training.stats import (
    delong_test,
    paired_bootstrap,
    summarize,
    summarize_baseline,
)

#: Metrics shown by the compare table, in order.
TABLE_METRICS = (
    ("f1", "F1"),
    ("auc", "ROC-AUC"),
    ("acc", "accuracy"),
    ("weighted_f1", "weighted F1"),
    ("brier", "Brier"),
)


def _strip(m: dict) -> dict:
    """A summarize() dict without the bulky reliability table."""
    return {k: v for k, v in m.items() if k != "reliability"}


def compare_runs(paths, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Compare run folders (at least two) on their common test clips.

    Returns:
        dict: ``runs`` (name, path, model, preset, seeds, source, n, ``metrics`` from summarize,
        ``per_seed`` point metrics), ``baseline_all_depressed`` (with intervals), ``pairs`` (``a``,
        ``b``, ``f1``: paired bootstrap, ``auc``: DeLong), ``warnings`` and ``notes``.

    Raises:
        DataError: a run has no test predictions, or two runs were tested on different clips.
    """
    paths = list(paths)
    if len(paths) < 2:
        raise ConfigError("compare needs at least two run folders", hint="depdet compare RUN_A RUN_B [RUN_C ...]")
    runs: list[RunData] = [load_run(p) for p in paths]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        names = [str(r.path) for r in runs]
    warnings: list[str] = []
    for a, b in combinations(runs, 2):
        warnings += pair_check(a, b)
    ref = runs[0]
    groups = ref.groups if all(r.groups == ref.groups for r in runs) else None
    if any(r.groups for r in runs) and groups is None:
        warnings.append("the runs record different clip groups: intervals and paired tests resample clips")
    notes = [
        (
            "probabilities: sigmoid(logit), decision at 0.5 (the papers' logit > 0); a run with several seeds "
            "is scored on the per-clip mean probability over its seeds (depdet's choice)"
        ),
        (
            f"intervals: 95% percentile bootstrap, {n_boot:,} resamples of the {'groups' if groups else 'clips'}, "
            f"seed {seed}"
        ),
        (
            "F1 difference: paired bootstrap (same resamples for both runs), two-sided p from the tail of the "
            "resampled differences beyond 0; ROC-AUC difference: DeLong's test (clips treated as independent)"
        ),
        "p-values are per pair, not corrected for multiple comparisons",
    ]
    out_runs = []
    for name, r in zip(names, runs):
        m = summarize(r.y, r.mean_prob, 0.5, groups=groups, n_boot=n_boot, seed=seed)
        per_seed = (
            [
                {"seed": s, **{k: summarize(r.y, r.prob[j], 0.5, n_boot=0)[k] for k, _ in TABLE_METRICS}}
                for j, s in enumerate(r.seeds)
            ]
            if len(r.seeds) > 1
            else []
        )
        out_runs.append(
            {
                "name": name,
                "path": str(r.path),
                "model": r.model,
                "preset": r.preset,
                "seeds": r.seeds,
                "source": r.source,
                "n": len(r.y),
                "n_pos": int(r.y.sum()),
                "metrics": _strip(m),
                "per_seed": per_seed,
            }
        )
    pairs = []
    for (i, a), (j, b) in combinations(enumerate(runs), 2):
        f1 = paired_bootstrap(a.y, a.mean_prob, b.mean_prob, metric="f1", groups=groups, n_boot=n_boot, seed=seed)
        try:
            auc = delong_test(a.y, a.mean_prob, b.mean_prob)
        except ValueError as e:  # one class only
            auc = {"error": str(e)}
        pairs.append({"a": names[i], "b": names[j], "f1": f1, "auc": auc})
    return {
        "n": len(ref.y),
        "n_pos": int(ref.y.sum()),
        "runs": out_runs,
        "baseline_all_depressed": _strip(summarize_baseline(ref.y, groups=groups, n_boot=n_boot, seed=seed)),
        "pairs": pairs,
        "warnings": warnings,
        "notes": notes,
    }


def jsonable(obj):
    """``obj`` with NaN/inf as None and numpy scalars/arrays as plain Python (strict JSON)."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _ci(m: dict, key: str) -> str:
    v = m.get(key)
    if v is None or v != v:
        return "-"
    ci = (m.get("ci95") or {}).get(key)
    return f"{v:.3f}" + (f"\n{ci[0]:.2f}–{ci[1]:.2f}" if ci else "")


def _p(p, digits: int = 3) -> str:
    if p is None or p != p:
        return "-"
    return f"<{10**-digits:.{digits}f}" if p < 10**-digits else f"{p:.{digits}f}"


def render_tables(result: dict):
    """Rich renderables (fit 80 columns): the metrics table and the paired-tests table."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(
        title=f"Test metrics, {result['n']} clips ({result['n_pos']} depressed): value and 95% interval",
        title_justify="left",
        caption="; ".join(result["notes"][:2]),
        caption_justify="left",
    )
    t.add_column("run", overflow="fold", min_width=12, max_width=24)
    for _, label in TABLE_METRICS:
        t.add_column(label, justify="right")
    for r in result["runs"]:
        seeds = r["seeds"]
        label = (
            f"{escape(r['name'])}\n[dim]{escape(r['model'])}, seed{'s' if len(seeds) > 1 else ''} "
            f"{','.join(map(str, seeds))}[/]"
        )
        t.add_row(label, *[escape(_ci(r["metrics"], k)) for k, _ in TABLE_METRICS])
    b = result["baseline_all_depressed"]
    t.add_row("[italic]all depressed[/]", *[escape(_ci(b, k)) if k in b else "-" for k, _ in TABLE_METRICS])
    p = Table(
        title="Paired differences (first minus second run)",
        title_justify="left",
        caption=result["notes"][2] + "; " + result["notes"][3],
        caption_justify="left",
    )
    p.add_column("first", overflow="fold", max_width=16)
    p.add_column("second", overflow="fold", max_width=16)
    p.add_column("ΔF1 [95% CI]", justify="right")
    p.add_column("p (boot.)", justify="right")
    p.add_column("ΔROC-AUC (SE)", justify="right")
    p.add_column("p (DeLong)", justify="right")
    for pr in result["pairs"]:
        f1, auc = pr["f1"], pr["auc"]
        ci = f1.get("ci95")
        d_f1 = f"{f1['difference']:+.3f}" + (escape(f"\n[{ci[0]:+.2f}, {ci[1]:+.2f}]") if ci else "")
        d_auc = "-" if "error" in auc else f"{auc['difference']:+.3f}\n({auc['se']:.3f})"
        p.add_row(
            escape(pr["a"]),
            escape(pr["b"]),
            d_f1,
            _p(f1.get("p_value"), 4),
            d_auc,
            "-" if "error" in auc else _p(auc["p_value"]),
        )
    return t, p
