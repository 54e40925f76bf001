"""Training throughput of DepMamba and JAMFN on a D-Vlog-sized synthetic set.

Prints, per model: seconds per training batch, samples/s and rows/s, the extrapolated (or, with
``--full-epoch``, measured) time of one D-Vlog training epoch (647 videos, mean ~596 rows, plus
DepMamba's crops when the preset uses them), and peak memory (CUDA: ``max_memory_allocated``; CPU:
the process's peak RSS, each model measured in its own subprocess).

Batches are drawn exactly as training draws them (shuffled training fold, padded to the batch's
longest member, the preset's batch size and paper-size model), so timings include the length
distribution's long tail. On a CPU a full epoch of the paper-size DepMamba takes hours, so by default
a few batches are timed and the epoch is extrapolated from the mean time per sample.

Usage::

    python bench/train.py                       # both models, 4 timed batches each, auto device
    python bench/train.py --models depmamba --batches 8 --device cuda --full-epoch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESET = {"depmamba": "depmamba-dvlog", "jamfn": "jamfn-dvlog"}


def _one(args) -> dict:
    import numpy as np
    import torch

    from depdet.models import create_model
    from depdet.pipeline.data.batching import collate
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.preprocess import PreprocessConfig, Preprocessor, random_crops
    from depdet.pipeline.training.presets import get_preset
    from depdet.pipeline.data.splits import own_split

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    preset = get_preset(PRESET[args.model])
    bs = args.batch_size or preset["batch_size"]
    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    load_s = time.perf_counter() - t0
    split = own_split(ds)
    pcfg = PreprocessConfig(**{**preset.get("preprocess", {})})
    pre = Preprocessor(pcfg, ds.spec, ds.dims).fit([ds.samples[i].features for i in split.train])
    feats = {i: pre.transform(ds.samples[i].features) for i in split.train}
    lengths = [feats[i]["visual"].shape[0] for i in split.train]
    n_items = len(split.train)
    if pcfg.crop_aug:
        n_items += len(random_crops(lengths, np.random.default_rng([1, 1]), pcfg.crop_min_len, pcfg.crop_attempts))
    torch.manual_seed(0)
    model = create_model(args.model, ds.dims, **preset["model_config"]).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=preset["lr"])
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rng = np.random.default_rng(0)
    order = rng.permutation(split.train)
    warmup = 1 if dev.type == "cuda" and not args.full_epoch else 0  # CUDA: one untimed batch (kernel set-up)
    n_batches = (len(order) + bs - 1) // bs if args.full_epoch else args.batches + warmup
    started = time.perf_counter()
    times, samples, rows, padded = [], 0, 0, []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for b in range(n_batches):
        idx = order[(b * bs) % len(order):(b * bs) % len(order) + bs]
        inputs, masks = collate([feats[i] for i in idx])
        yb = torch.as_tensor(ds.labels[idx], dtype=torch.float32, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        inputs = {m: x.to(dev) for m, x in inputs.items()}
        masks = {m: x.to(dev) for m, x in masks.items()}
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            loss = model.loss(model(inputs, masks), yb)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dt = time.perf_counter() - t
        if b < warmup:
            continue
        times.append(dt)
        padded.append(int(inputs["visual"].shape[1]))
        samples += len(idx)
        rows += int(sum(feats[i]["visual"].shape[0] for i in idx))
        if not args.full_epoch and args.budget_s and time.perf_counter() - started > args.budget_s:
            break  # slow device: stop after the batch that crossed the time budget
    total = sum(times)
    sps = samples / total
    mean_len = float(np.mean(lengths))
    res = {
        "model": args.model, "preset": PRESET[args.model], "params": n_params, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "batch_size": bs, "amp": amp,
        "timed_batches": len(times), "padded_lengths": padded, "timed_samples": samples, "sec_per_batch": total / len(times),
        "samples_per_s": sps, "rows_per_s": rows / total,
        "train_items_per_epoch": n_items, "train_videos": len(split.train), "mean_train_len": mean_len,
        "epoch_s": (total if args.full_epoch and n_items == len(split.train) else n_items / sps),
        "epoch_measured": bool(args.full_epoch and n_items == len(split.train)),
        "load_s": load_s,
        "peak_mem_mb": (torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda"
                        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_mem_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
    }
    if args.full_epoch and n_items != len(split.train):
        res["note"] = "epoch_s extrapolated to include the preset's crops from the measured full pass over the videos"
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["depmamba", "jamfn"], choices=sorted(PRESET))
    ap.add_argument("--data", help="Existing D-Vlog-layout folder (default: synthesise 961 samples in a temp dir).")
    ap.add_argument("--batches", type=int, default=4, help="Timed batches per model (after one warm-up batch).")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="Stop timing a model after the batch that crosses this many seconds (0: no limit).")
    ap.add_argument("--batch-size", type=int, default=None, help="Default: the preset's (16 DepMamba, 8 JAMFN).")
    ap.add_argument("--full-epoch", action="store_true", help="Time one full pass over the training videos.")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="Also write the results here.")
    ap.add_argument("--model", help=argparse.SUPPRESS)  # internal: one model in this process
    args = ap.parse_args()

    if args.model:
        print(json.dumps(_one(args)))
        return

    tmp = None
    if not args.data:
        from depdet.pipeline.data.synth import SynthConfig, make_synthetic

        tmp = tempfile.TemporaryDirectory(prefix="depdet-bench-")
        args.data = str(Path(tmp.name) / "dvlog")
        t = time.perf_counter()
        s = make_synthetic(args.data, SynthConfig(layout="dvlog", signal=1.0, seed=0))
        print(f"synthetic D-Vlog-sized set: {s['n']} samples, folds {s['folds']}, lengths {s['lengths']} "
              f"({time.perf_counter() - t:.1f} s to write)", flush=True)
    results = []
    for m in args.models:
        cmd = [sys.executable, __file__, "--model", m, "--data", args.data, "--batches", str(args.batches),
               "--device", args.device, "--budget-s", str(args.budget_s)]
        for flag, val in (("--batch-size", args.batch_size), ("--threads", args.threads)):
            if val:
                cmd += [flag, str(val)]
        if args.full_epoch:
            cmd.append("--full-epoch")
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{m}: failed\n{out.stderr[-2000:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        kind = "measured" if r["epoch_measured"] else f"extrapolated from {r['timed_batches']} batches"
        print(f"{m:>9} ({r['params'] / 1e6:.2f} M params, {r['device']} {r['device_name']}, {r['torch_threads']} threads, "
              f"batch {r['batch_size']}): {r['sec_per_batch']:.2f} s/batch, {r['samples_per_s']:.2f} samples/s, "
              f"{r['rows_per_s']:.0f} rows/s; epoch ({r['train_items_per_epoch']} items incl. crops) "
              f"{r['epoch_s']:.0f} s ({kind}; padded lengths {r['padded_lengths']}); peak memory {r['peak_mem_mb']:.0f} MB ({r['peak_mem_kind']})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
