"""Where one DepMamba training step spends its CPU time (torch.profiler), grouped for issue 11.

One step = zero_grad, forward, BCE loss, backward, Adam step of DepMamba at the ``depmamba-dvlog``
preset's size (its ``model_config``: d_state 12, padding "original"; d_model 256, expand 4), D-Vlog
feature sizes (visual 136, audio 25), batch 16 x 596 rows of random data. ``--padding fixed`` (the
``*-fixed`` presets) with ``--ragged`` (per-sample lengths between 23 and 596 rows, as D-Vlog's
clips) profiles the masked path instead.

Printed: the thread count, the best-of-N wall time per step (after a warm-up, no profiler), then
the profiled step's self CPU time grouped into

* matrix products: mm / addmm / bmm / matmul / linear (and their autograd nodes),
* convolution: the depthwise and k=3/k=1 convolutions, forward and backward (with the compiled
  depthwise conv: its ``depdet_conv_*`` calls, timed the same way as the scan kernel's below, and
  its autograd node; its fused SiLU is counted here, PyTorch's ``aten::silu`` under "other"),
* scan kernel: the compiled C selective scan's forward and backward calls (timed by wrapping the
  loaded library's ``depdet_scan_*`` entry points in ``record_function``, so the time is the C
  call alone, not the PyTorch glue around it),
* everything else (copies, element-wise ops, softplus, gather, fill, ...), with its top ops.

The grouping uses *self* time (an op's time minus its children's), so nothing is counted twice;
the profiled step runs slower than an unprofiled one (the profiler's own cost), so compare the
groups with each other and the wall time with the wall time.

    python bench/profile_step.py                    # the depmamba-dvlog preset (padding original)
    python bench/profile_step.py --padding fixed --ragged
    PYTHONPATH=/path/to/other/checkout python bench/profile_step.py   # profile another version
"""

from __future__ import annotations

import argparse
import os
import time

MATMUL = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::matmul",
    "aten::linear",
    "aten::baddbmm",
    "MmBackward0",
    "AddmmBackward0",
    "BmmBackward0",
    "LinearBackward0",
    "UnsafeViewBackward0",
)
CONV = ("conv", "Conv")  # aten::convolution, aten::_convolution, mkldnn_convolution, convolution_backward...
SCAN = "scan_kernel::"
CONV_KERNEL = "conv_kernel::"  # the compiled depthwise conv's calls: "conv" puts them in "convolution"


def group_of(name: str) -> str:
    if name.startswith(SCAN):
        return "scan kernel"
    if name in MATMUL:
        return "matrix products"
    if any(c in name for c in CONV):
        return "convolution"
    return "other"


class _TimedLib:
    """The loaded kernel library with each ``depdet_scan_*`` / ``depdet_conv_*`` call inside ``record_function``."""

    def __init__(self, lib):
        self._lib = lib

    def __getattr__(self, name):
        fn = getattr(self._lib, name)
        if name in ("depdet_scan_abi", "depdet_scan_bwd_parts"):
            return fn
        match = next(
            ((p, lab) for p, lab in (("depdet_scan_", SCAN), ("depdet_conv_", CONV_KERNEL)) if name.startswith(p)), None
        )
        if match is None:
            return fn
        prefix, label = match
        from torch.profiler import record_function

        def call(*args):
            with record_function(label + name[len(prefix) :]):
                return fn(*args)

        return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: what torch picks)")
    ap.add_argument("--repeat", type=int, default=3, help="timed steps; the best is reported")
    ap.add_argument(
        "--padding",
        choices=("original", "fixed"),
        default=None,
        help="model padding mode (default: the depmamba-dvlog preset's)",
    )
    ap.add_argument("--ragged", action="store_true", help="per-sample lengths 23..596 instead of all 596")
    ap.add_argument("--top", type=int, default=12, help="'other' ops to list")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--rows", type=int, default=596)
    a = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    import depdet
    from depdet.models import create_model, scan_kernel
    from depdet.models import mamba as M
    from depdet.pipeline.training.presets import get_preset

    if a.threads:
        torch.set_num_threads(a.threads)
    preset = get_preset("depmamba-dvlog")
    cfg = dict(preset["model_config"])
    if a.padding:
        cfg["padding"] = a.padding
    bsz, L = a.batch or preset["batch_size"], a.rows
    dims = {"visual": 136, "audio": 25}
    torch.manual_seed(0)
    model = create_model(preset["model"], dims, **cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=preset["lr"])
    if a.ragged:
        lengths = torch.linspace(23, L, bsz).round().long()
    else:
        lengths = torch.full((bsz,), L)
    valid = torch.arange(L)[None, :] < lengths[:, None]
    inputs = {m: torch.randn(bsz, L, d) * valid[..., None] for m, d in dims.items()}
    masks = {m: valid.clone() for m in dims}
    labels = (torch.arange(bsz) % 2).float()
    backend = M.scan_backend(inputs["visual"])
    if backend == "kernel":
        scan_kernel._lib = _TimedLib(scan_kernel._load())

    def step():
        opt.zero_grad()
        model.loss(model(inputs, masks), labels).backward()
        opt.step()

    print(f"depdet from {os.path.dirname(depdet.__file__)}")
    print(
        f"DepMamba train step: {cfg}, dims {dims}, batch {bsz} x {L} rows"
        f"{f' (ragged lengths 23..{L})' if a.ragged else ''}, scan backend {backend}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    step()  # warm-up (kernel build/load, allocator)
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(f"wall per step: best {min(times):.2f} s of {a.repeat} ({', '.join(f'{t:.2f}' for t in times)})")

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step()
        prof_wall = time.perf_counter() - t0
    groups: dict[str, float] = {}
    other: list[tuple[float, int, str]] = []
    for ev in prof.key_averages():
        g = group_of(ev.key)
        secs = ev.self_cpu_time_total / 1e6
        groups[g] = groups.get(g, 0.0) + secs
        if g == "other":
            other.append((secs, ev.count, ev.key))
    total = sum(groups.values())
    print(f"\nprofiled step: wall {prof_wall:.2f} s, self CPU time {total:.2f} s (all threads of torch's ops)")
    print(f"{'group':<20s} {'seconds':>8s} {'share':>6s}")
    for g in ("matrix products", "convolution", "scan kernel", "other"):
        s = groups.get(g, 0.0)
        print(f"{g:<20s} {s:8.2f} {100 * s / total:5.1f}%")
    mc = groups.get("matrix products", 0.0) + groups.get("convolution", 0.0)
    rest = total - mc
    print(f"{'matmul + conv':<20s} {mc:8.2f}")
    print(
        f"{'all but matmul+conv':<20s} {rest:8.2f}  (target: below matmul + conv: {'met' if rest < mc else 'not met'})"
    )
    print(f"\ntop {a.top} 'other' ops (self CPU time):")
    for secs, n, key in sorted(other, reverse=True)[: a.top]:
        print(f"  {key:<40s} {secs:7.3f} s  {n:5d} calls")


if __name__ == "__main__":
    main()
