"""One D-Vlog-size training epoch of a recipe (default ``depmamba-dvlog``): random order vs length
buckets vs length buckets + the ``--max-tokens`` budget, measured in one run.

Data: ``depdet synth`` at D-Vlog size (961 clips with D-Vlog's lengths, 23-3968 rows; its folds, so
647 training videos plus the recipe's crops), written once to a temp folder (or ``--data``). Each
variant runs in a fresh subprocess on the trainer's own code: ``Trainer._prepare`` (the fold's
preprocessing), ``Trainer._epoch_plan`` (epoch 1's batches, exactly as ``depdet train`` draws them)
and ``Trainer._step`` (one optimiser step, split into micro-batches under the budget), the
paper-size model of the preset.

Printed per variant: padded rows per epoch (and their ratio to the real rows: the padding), the
epoch's seconds, and the process's peak RSS (everything: data, model, optimiser, activations).

* ``--full-epoch VARIANT ...``: those variants run every batch of the epoch (measured).
* otherwise a seeded sample of ``--batches`` batches is timed and the epoch is estimated as
  (seconds per padded row of the sample) x (padded rows of the whole epoch), labelled "estimated".
  The epoch's largest step (most padded rows in one forward) is always run too, so the peak RSS
  is the epoch's, unless a straight-line fit of the sampled steps' memory says it needs more
  than this machine has free: then it is not run and the prediction is printed instead.

Targets (issue 11, 2-core CPU): an epoch <= 10 minutes and peak RSS <= 8 GB with depdet's defaults
(``bucketed+max-tokens``: no preset, or a ``*-fixed`` preset). The paper presets train on the
references' batches (``random``: random order, whole batches; issue 21), which this script measures
as the ``random`` variant.

    python bench/train.py                                   # all three, sampled
    python bench/train.py --full-epoch bucketed bucketed+max-tokens
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {  # name -> (bucketing, max_tokens): "random" is the references' order and whole batches
    "random": (False, 0),
    "bucketed": (True, 0),
    "bucketed+max-tokens": (True, None),  # None: depdet's default budget (DEFAULT_MAX_TOKENS)
}


def _meminfo_gb(key: str) -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def _one(args) -> dict:
    import numpy as np
    import torch

    from depdet.environment import peak_rss_gb, reset_peak_rss
    from depdet.models import create_model
    from depdet.pipeline.data.batching import DEFAULT_MAX_TOKENS, split_by_tokens
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    bucketing, max_tokens = VARIANTS[args.variant]
    if max_tokens is None:
        max_tokens = args.max_tokens or DEFAULT_MAX_TOKENS
    cfg = TrainConfig.from_preset(
        args.preset, epochs=1, seeds=[1], device="cpu", bucketing=bucketing, max_tokens=max_tokens
    )
    ds = load_dataset(args.data)
    with tempfile.TemporaryDirectory(prefix="depdet-bench-run-") as rd:
        tr = Trainer(ds, cfg, rd)
        split = tr.splits()[0]
        seed = cfg.seeds[0]
        pre, feats = tr._prepare(split)
        items = tr._train_items(seed, split, feats)
        plan = tr._epoch_plan(items, feats, seed, 1)
        torch.manual_seed(seed)
        model = create_model(cfg.model, ds.dims, **tr.model_config).to(tr.device)
        model.train()
        opt, _ = tr._make_optimizer(model)
        scaler = torch.amp.GradScaler("cuda", enabled=False)

        def length(v):
            return min(int(np.shape(a)[0]) for a in v.values())

        def cost(views):  # padded rows of the step and of its largest forward
            lens = [length(v) for v in views]
            parts = split_by_tokens(lens, max_tokens or None)
            sizes = [len(p) * max(lens[j] for j in p) for p in parts]
            return sum(sizes), max(sizes), len(parts)

        costs = [cost(v) for _, v, _ in plan]
        real_rows = sum(length(v) for _, views, _ in plan for v in views)
        padded_rows = sum(c[0] for c in costs)
        n = len(plan)
        rng = np.random.default_rng(0)
        if args.full:
            chosen = list(range(n))
        else:
            chosen = sorted(rng.choice(n, size=min(args.batches, n), replace=False).tolist())
        largest = max(range(n), key=lambda b: costs[b][1])
        base_gb = peak_rss_gb()
        timed, mem = [], []  # (seconds, padded rows), (largest forward rows, peak GB of the step)
        t_epoch = time.perf_counter()
        for b in chosen:
            batch, views, vviews = plan[b]
            reset_peak_rss()
            t = time.perf_counter()
            tr._step(model, opt, scaler, batch, views, vviews, 1)
            timed.append((time.perf_counter() - t, costs[b][0]))
            mem.append((costs[b][1], peak_rss_gb()))
        wall = time.perf_counter() - t_epoch
        largest_note = "in the timed batches" if largest in chosen else ""
        predicted = None
        if largest not in chosen:
            xs = np.array([m[0] for m in mem], dtype=float)
            ys = np.array([m[1] for m in mem], dtype=float)
            slope, icpt = np.polyfit(xs, ys, 1) if len(set(xs.tolist())) > 1 else (0.0, float(ys.max()))
            predicted = float(icpt + slope * costs[largest][1])
            free = _meminfo_gb("MemAvailable") + peak_rss_gb()
            if predicted < 0.8 * free:
                batch, views, vviews = plan[largest]
                reset_peak_rss()
                t = time.perf_counter()
                tr._step(model, opt, scaler, batch, views, vviews, 1)
                mem.append((costs[largest][1], peak_rss_gb()))
                largest_note = f"run ({time.perf_counter() - t:.1f} s)"
            else:
                largest_note = f"NOT run: predicted {predicted:.1f} GB, {free:.1f} GB free here"
        secs = sum(t for t, _ in timed)
        per_row = secs / max(1, sum(r for _, r in timed))
        peak = max([base_gb] + [m[1] for m in mem])
        return {
            "variant": args.variant,
            "preset": args.preset,
            "bucketing": bucketing,
            "max_tokens": max_tokens,
            "model": cfg.model,
            "params": sum(p.numel() for p in model.parameters()),
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "batches": n,
            "items": len(items),
            "real_rows": real_rows,
            "padded_rows": padded_rows,
            "micro_batches": sum(c[2] for c in costs),
            "largest_forward_rows": costs[largest][1],
            "timed_batches": len(timed),
            "timed_s": secs,
            "measured": bool(args.full),
            "epoch_s": wall if args.full else per_row * padded_rows,
            "peak_rss_gb": peak,
            "largest": largest_note,
            "largest_predicted_gb": predicted,
            "data_rss_gb": base_gb,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="depmamba-dvlog")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument(
        "--full-epoch",
        nargs="*",
        default=[],
        choices=list(VARIANTS),
        metavar="VARIANT",
        help="Run every batch of these variants' epoch (default: a timed sample).",
    )
    ap.add_argument("--batches", type=int, default=8, help="Timed batches per sampled variant.")
    ap.add_argument("--max-tokens", type=int, default=None, help="Budget of bucketed+max-tokens (default: depdet's).")
    ap.add_argument("--data", help="Existing D-Vlog-layout folder (default: synthesise 961 samples in a temp dir).")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="Also write the results here.")
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: one variant in this process
    ap.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(_one(args)))
        return

    tmp = None
    if not args.data:
        from depdet.pipeline.data.synth import SynthConfig, make_synthetic

        tmp = tempfile.TemporaryDirectory(prefix="depdet-bench-")
        args.data = str(Path(tmp.name) / "dvlog")
        t = time.perf_counter()
        s = make_synthetic(args.data, SynthConfig(layout="dvlog", signal=1.0, seed=0))
        print(
            f"synthetic D-Vlog-size set: {s['n']} clips, lengths {s['lengths']} ({time.perf_counter() - t:.1f} s to write)",
            flush=True,
        )
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, {_meminfo_gb('MemTotal'):.1f} GB RAM, load average "
        f"{os.getloadavg()[0]:.1f}; preset {args.preset}",
        flush=True,
    )
    results = []
    for v in args.variants:
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            v,
            "--preset",
            args.preset,
            "--data",
            args.data,
            "--batches",
            str(args.batches),
        ]
        for flag, val in (("--threads", args.threads), ("--max-tokens", args.max_tokens)):
            if val:
                cmd += [flag, str(val)]
        if v in args.full_epoch:
            cmd.append("--full")
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{v}: failed after {time.perf_counter() - t:.0f} s\n{out.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        kind = (
            "measured" if r["measured"] else f"estimated from {r['timed_batches']} timed batches ({r['timed_s']:.0f} s)"
        )
        print(
            f"{v:>20}: {r['batches']} batches ({r['micro_batches']} forwards), padded rows {r['padded_rows']:,} = "
            f"{r['padded_rows'] / r['real_rows']:.2f}x the real {r['real_rows']:,}; epoch {r['epoch_s']:.0f} s "
            f"({r['epoch_s'] / 60:.1f} min, {kind}); peak RSS {r['peak_rss_gb']:.2f} GB (data loaded: "
            f"{r['data_rss_gb']:.2f} GB; largest forward {r['largest_forward_rows']:,} rows {r['largest']})",
            flush=True,
        )
    by = {r["variant"]: r for r in results}
    if "random" in by:
        for v in ("bucketed", "bucketed+max-tokens"):
            if v in by:
                print(
                    f"{v} vs random: {by['random']['epoch_s'] / by[v]['epoch_s']:.2f}x faster per epoch, padded rows "
                    f"{by[v]['padded_rows'] / by['random']['padded_rows']:.2f}x, peak RSS "
                    f"{by[v]['peak_rss_gb']:.2f} vs {by['random']['peak_rss_gb']:.2f} GB",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
