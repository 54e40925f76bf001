"""One DepMamba training epoch on D-Vlog-size synthetic data on a GPU, in float32 and with bf16 autocast.

Prints, per precision: seconds per epoch (647 training videos of the D-Vlog split, the
``depmamba-dvlog`` recipe's batch of 16 and paper-size model, batches in the reference random order,
padded to their longest member), peak GPU memory (``torch.cuda.max_memory_allocated``), and the
scan path in use (mamba-ssm's kernel when installed, else depdet's chunked PyTorch scan). The
recipe's random crops are left out (they add ~25 % more items; the timing is of the model, not of the
augmentation). Run by ``bench/gpu.sh``; on a machine without CUDA it says so and exits 0.

Usage::

    python bench/gpu_epoch.py --precision fp32 bf16 [--data DVLOG_DIR] [--batches N]
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    import numpy as np
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--data", help="an existing D-Vlog-layout folder (default: synthesise 961 samples)")
    ap.add_argument("--batches", type=int, default=None, help="time only this many batches (default: the epoch)")
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run of the script itself")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_epoch: no CUDA device here; nothing measured")
        return
    on_gpu = args.device.startswith("cuda")

    from depdet.models import create_model
    from depdet.models.mamba import scan_backend
    from depdet.pipeline.data.batching import collate, random_batches
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.splits import own_split
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.training.presets import get_preset

    dev = torch.device(args.device)
    preset = get_preset("depmamba-dvlog")
    tmp = tempfile.TemporaryDirectory()
    root = args.data
    if root is None:
        root = f"{tmp.name}/dvlog"
        t0 = time.perf_counter()
        make_synthetic(root, SynthConfig(layout="dvlog", seed=0))
        print(f"synthetic D-Vlog-size set: {time.perf_counter() - t0:.1f} s")
    ds = load_dataset(root)
    split = own_split(ds)
    samples = [ds.samples[i] for i in split.train]
    print(
        f"device: {torch.cuda.get_device_name(dev) if on_gpu else 'cpu (dry run)'}; torch {torch.__version__}; {len(samples)} training videos, "
        f"batch {preset['batch_size']}"
    )
    for prec in args.precision:
        torch.manual_seed(0)
        model = create_model("depmamba", ds.dims, **preset["model_config"]).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=preset["lr"])
        batches = random_batches(len(samples), preset["batch_size"], np.random.default_rng(0))
        if args.batches:
            batches = batches[: args.batches]
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(dev)
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        rows = 0
        for b in batches:
            inputs, masks = collate([samples[i].features for i in b], [samples[i].valid for i in b])
            inputs = {m: x.to(dev, non_blocking=True) for m, x in inputs.items()}
            masks = {m: x.to(dev, non_blocking=True) for m, x in masks.items()}
            y = torch.as_tensor([samples[i].label for i in b], dtype=torch.float32, device=dev)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
                out = model(inputs, masks)
                loss = model.loss(out, y)
            loss.backward()
            opt.step()
            rows += next(iter(inputs.values())).shape[0] * next(iter(inputs.values())).shape[1]
        if on_gpu:
            torch.cuda.synchronize(dev)
        sec = time.perf_counter() - t0
        scale = len(random_batches(len(samples), preset["batch_size"], np.random.default_rng(0))) / len(batches)
        print(
            f"depmamba {prec}: {sec * scale:.1f} s per epoch ({len(batches)} batches timed, {rows / sec:,.0f} padded "
            f"rows/s), peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30 if on_gpu else float('nan'):.2f} GiB, scan: "
            f"{scan_backend(inputs['visual'])}, final loss {float(loss.detach()):.4f}"
        )
        del model, opt
        if on_gpu:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
