"""Prediction latency on this CPU: end to end for a long clip, and model-only for every model.

1. **End to end** on a ``--minutes``-long 640x480 25 fps H.264/AAC vlog built from the GRID clips
   (bench/_media.py): extraction with the checkpoint's spec (D-Vlog: eGeMAPS + dlib landmarks at
   1 row/s), then the model with its evidence, i.e. exactly what ``depdet predict`` does per clip.
   The checkpoint is ``--checkpoint`` or, by default, the demo's small jamfn trained here on
   synthetic data (latency does not depend on what the weights learned).
2. **Model only**: each torch model of the registry at its default (paper-size) configuration,
   randomly initialised, on one ``minutes * 60``-row D-Vlog-shaped input: the forward pass alone,
   and forward + evidence with depdet's defaults (attention/gates where the model has them, else
   occlusion with 1-s windows widened to at most ``DEFAULT_MAX_WINDOWS`` (30) windows, the scorer's
   8 windows per forward, plus modality masking). ``--one-at-a-time`` also times one window per
   forward (same numbers expected); ``--old-default`` the defaults before issue 11's change (at most
   120 windows, 32 per forward), both in the same run.

    python bench/predict.py [--minutes 10] [--models jamfn,detector] [--skip-e2e] [--threads N]
    python bench/predict.py --skip-e2e --models depmamba,dynmultidep,asym --one-at-a-time --old-default   # issue 11

Prints one line per measurement and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _median_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_only(
    names: list[str], rows: int, repeat: int, evidence: bool, one_at_a_time: bool = False, old_default: bool = False
) -> list[dict]:
    import torch

    from depdet.models import create_model, get_entry
    from depdet.pipeline.features.spec import DVLOG
    from depdet.pipeline.inference.evidence import compute_evidence
    from depdet.pipeline.inference.scorer import Scorer

    dims = DVLOG.dims
    g = torch.Generator().manual_seed(0)
    inputs = {m: torch.randn(1, rows, d, generator=g) for m, d in dims.items()}
    masks = {m: torch.ones(1, rows, dtype=torch.bool) for m in dims}
    out = []
    for name in names:
        if get_entry(name).kind != "torch":
            continue
        torch.manual_seed(0)
        try:
            model = create_model(name, dims).eval()
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"model {name:>14}: cannot build ({type(e).__name__}: {e})", flush=True)
            continue
        n_params = sum(p.numel() for p in model.parameters())
        sc = Scorer(model)
        with torch.no_grad():
            fwd = _median_time(lambda model=model: model(inputs, masks), repeat)
            row = {"model": name, "params": n_params, "rows": rows, "forward_s": round(fwd, 4)}
            if evidence:
                t0 = time.perf_counter()
                ev = compute_evidence(sc.batch_logits, inputs, masks, output=sc.forward(inputs, masks), fps=1.0)
                row.update(
                    evidence_s=round(time.perf_counter() - t0, 3),
                    evidence_method=ev.timeline_method,
                    window_s=ev.window_s,
                )
                if (
                    one_at_a_time and ev.timeline_method == "occlusion"
                ):  # the old path, same run: one window per forward
                    t0 = time.perf_counter()
                    ev1 = compute_evidence(
                        sc.batch_logits, inputs, masks, output=sc.forward(inputs, masks), fps=1.0, batch_size=1
                    )
                    row.update(
                        evidence_one_at_a_time_s=round(time.perf_counter() - t0, 3),
                        max_abs_diff=float(abs(ev1.timeline - ev.timeline).max()),
                    )
                if old_default and ev.timeline_method == "occlusion":  # before issue 11: <= 120 windows, 32 per forward
                    t0 = time.perf_counter()
                    ev0 = compute_evidence(
                        sc.batch_logits,
                        inputs,
                        masks,
                        output=sc.forward(inputs, masks),
                        fps=1.0,
                        max_windows=120,
                        batch_size=32,
                    )
                    row.update(
                        evidence_old_default_s=round(time.perf_counter() - t0, 3), old_default_window_s=ev0.window_s
                    )
        print(
            f"model {name:>14}: {n_params / 1e6:6.2f} M params, forward {fwd * 1000:8.1f} ms"
            + (f", + evidence ({row['evidence_method']}) {row['evidence_s']:.2f} s" if evidence else "")
            + (
                f" (one window per forward: {row['evidence_one_at_a_time_s']:.2f} s, "
                f"{row['evidence_one_at_a_time_s'] / row['evidence_s']:.1f}x slower; max |difference| "
                f"{row['max_abs_diff']:.1e})"
                if "max_abs_diff" in row
                else ""
            )
            + (
                f"; window {row['window_s']:g} s (old default, {row['old_default_window_s']:g}-s windows 32 per "
                f"forward: {row['evidence_old_default_s']:.2f} s)"
                if "evidence_old_default_s" in row
                else ""
            ),
            flush=True,
        )
        out.append(row)
    return out


def demo_checkpoint(workdir: Path) -> Path:
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.demo.run import DEMO_MODELS, DemoConfig
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    cfg = DemoConfig()
    make_synthetic(
        workdir / "data",
        SynthConfig(layout="dvlog", n=cfg.n, signal=cfg.signal, seed=0, min_len=cfg.min_len, max_len=cfg.max_len),
    )
    tcfg = TrainConfig(
        model=cfg.model,
        model_config=dict(DEMO_MODELS[cfg.model]),
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        epochs=3,
        seeds=[0],
        device="cpu",
        amp=False,
        select="loss",
    )
    return Path(train(load_dataset(workdir / "data"), tcfg, workdir / "run")["checkpoint"])


def end_to_end(checkpoint: Path, minutes: float) -> dict:
    from _media import long_vlog

    from depdet.pipeline.features.clip import extract_clip
    from depdet.pipeline.inference.predict import Predictor

    video = long_vlog(minutes)
    pred = Predictor(checkpoint)
    t0 = time.perf_counter()
    clip = extract_clip(video, pred.spec, pred.extract_options)
    t_extract = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred.evidence = False
    pred.score(clip.features, clip.valid)
    t_model = time.perf_counter() - t0
    pred.evidence = True
    t0 = time.perf_counter()
    _, _, ev = pred.score(clip.features, clip.valid)
    t_model_ev = time.perf_counter() - t0
    row = {
        "video": str(video),
        "duration_s": round(clip.duration, 2),
        "rows": clip.T,
        "model": pred.ckpt.model_name,
        "extract_s": round(t_extract, 2),
        "model_s": round(t_model, 3),
        "model_plus_evidence_s": round(t_model_ev, 3),
        "evidence_method": ev.timeline_method if ev else None,
        "face_ratio": round(clip.info.get("face_ratio", 0), 3),
    }
    row["total_s"] = round(t_extract + t_model_ev, 2)
    row["realtime_factor"] = round(clip.duration / row["total_s"], 1)
    print(
        f"end to end ({clip.duration / 60:.1f}-min clip, {pred.ckpt.model_name}): extraction {t_extract:.1f} s, "
        f"model {t_model * 1000:.0f} ms, model + evidence ({row['evidence_method']}) {t_model_ev:.2f} s; "
        f"total {row['total_s']:.1f} s = {row['realtime_factor']}x realtime",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="clip length (default 10)")
    ap.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint for the end-to-end run (default: demo model)"
    )
    ap.add_argument(
        "--models", default=None, help="comma-separated registry names for model-only (default: all torch models)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed forward passes per model (median)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-e2e", action="store_true", help="model-only timings only")
    ap.add_argument("--skip-models", action="store_true", help="end-to-end timing only")
    ap.add_argument("--no-evidence", action="store_true", help="model-only: forward pass only")
    ap.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="model-only: also time occlusion with one window per forward (the old path) and compare",
    )
    ap.add_argument(
        "--old-default",
        action="store_true",
        help="model-only: also time occlusion with the defaults before issue 11 (<= 120 windows, 32 per forward)",
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from depdet.models import list_models

    env = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    print("environment:", json.dumps(env), flush=True)
    summary = {"environment": env}
    if not args.skip_e2e:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = args.checkpoint or demo_checkpoint(Path(tmp))
            summary["end_to_end"] = end_to_end(ckpt, args.minutes)
    if not args.skip_models:
        names = args.models.split(",") if args.models else list_models()
        summary["model_only"] = model_only(
            names,
            int(round(args.minutes * 60)),
            args.repeat,
            not args.no_evidence,
            args.one_at_a_time,
            args.old_default,
        )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
