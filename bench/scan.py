"""Selective-scan and DepMamba throughput on this machine (CPU; CUDA figures only with a GPU).

Measures forward+backward of one selective scan (batch 16, d_inner 1024, d_state 16, L = 1000 and
4000) for the sequential reference loop, the chunked PyTorch path and the compiled CPU kernel
(``depdet/models/scan_kernel.c``; the ``mamba_ssm`` kernel instead when it imports and a GPU exists),
then one DepMamba training step (D-Vlog dims, batch 16, L = 596) on each CPU scan path.

Every measurement runs in a fresh subprocess. Peak memory is the subprocess's peak resident set
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) minus its resident set just before the timed call
(inputs, model and torch itself excluded; freed heap is trimmed first with glibc ``malloc_trim``),
i.e. the extra host memory the call needed; on CUDA it is
``torch.cuda.max_memory_allocated``.

    python bench/scan.py            # batch 16; the reference loop's batch shrinks to fit in RAM
    python bench/scan.py --quick    # the reference loop at batch 2 only (much faster to run)

The sequential reference keeps ~5 (B, d_inner, d_state) tensors per time step for autograd
(~0.36 MiB per step and sample at d_inner 1024, d_state 16: ~22 GiB at B=16, L=4000), so its batch
is reduced until its estimate fits in 40 % of the available memory; the fast paths then also run
at that batch, for a like-for-like ratio (a smaller batch is kinder to the loop: its per-step
tensors stay in cache, so its tokens/s at batch 4 are ~2x those at batch 16). An extra "overhead-bound" row (B=2, d_inner 64) shows the regime where the Python
loop, not memory traffic, dominates.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time


def _trim() -> None:
    """Return freed heap memory to the OS so the RSS baseline is not inflated by set-up garbage."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


#: measured: the reference loop's extra memory per time step and sample (d_inner 1024, d_state 16)
REF_MIB_PER_STEP_SAMPLE = 0.36


def _available_mib() -> float:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) / 1024


def _one(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if args.what == "depmamba":
        import os

        os.environ["DEPDET_SCAN"] = args.scan
        from depdet.models import create_model

        torch.manual_seed(0)
        model = create_model("depmamba", {"visual": 136, "audio": 25}, d_state=12).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        inputs = {
            "visual": torch.randn(args.batch, args.L, 136, device=dev),
            "audio": torch.randn(args.batch, args.L, 25, device=dev),
        }
        masks = {m: torch.ones(args.batch, args.L, dtype=torch.bool, device=dev) for m in inputs}
        labels = (torch.arange(args.batch, device=dev) % 2).float()

        def step():
            opt.zero_grad()
            model.loss(model(inputs, masks), labels).backward()
            opt.step()
    else:
        from depdet.models import mamba as M

        torch.manual_seed(0)
        b, d, n, L = args.batch, args.d_inner, args.d_state, args.L
        u = torch.randn(b, d, L, device=dev, requires_grad=True)
        # Mamba-like step sizes: softplus(dt_bias + small noise), dt in [1e-3, 0.1] per channel
        dt = torch.exp(torch.rand(d, device=dev) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        bias = dt + torch.log(-torch.expm1(-dt))
        delta = (0.1 * torch.randn(b, d, L, device=dev)).requires_grad_()
        A = -torch.arange(1, n + 1, dtype=torch.float32, device=dev).repeat(d, 1).requires_grad_()
        B = torch.randn(b, n, L, device=dev, requires_grad=True)
        C = torch.randn(b, n, L, device=dev, requires_grad=True)
        D = torch.ones(d, device=dev, requires_grad=True)
        z = torch.randn(b, d, L, device=dev, requires_grad=True)
        if args.what == "kernel":
            from depdet.models import scan_kernel

            if not scan_kernel.available():
                return {"skipped": f"CPU kernel not built: {scan_kernel.build_error()}"}
        fn = {
            "ref": M.selective_scan_ref,
            "chunked": M.selective_scan_chunked,
            "kernel": M.selective_scan_cpu,
            "cuda": M.selective_scan,
        }[args.what]
        if args.what == "cuda" and not M.use_cuda_scan(u):
            return {"skipped": "mamba_ssm kernel not importable"}

        def step():
            y = fn(u, delta, A, B, C, D, z, bias, True)
            y.sum().backward()

    if dev.type == "cuda":
        step()  # warm-up (kernel selection)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    _trim()
    base = _rss_mb()
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = (time.perf_counter() - t0) / args.repeat
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    mem = (torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else max(0.0, peak - base)
    return {"seconds": secs, "tokens_per_s": args.batch * args.L / secs, "peak_extra_mib": mem}


def _run(cfg: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--one", json.dumps(cfg)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {"error": f"exit {p.returncode}: {tail}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="reference loop at batch 2 instead of 16")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(_one(argparse.Namespace(**json.loads(a.one)))))
        return

    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {a.threads}, CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}"
    )
    print(
        "memory: peak RSS of a fresh subprocess minus its RSS before the timed call (getrusage ru_maxrss);"
        " on CUDA torch.cuda.max_memory_allocated"
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        for L in a.lengths:
            paths = ["ref", "chunked"] + (["cuda"] if dev == "cuda" else ["kernel"])
            ref_batch = 16
            for what in paths:
                batches = [16]
                if what == "ref" and dev == "cpu":
                    batch = 2 if a.quick else 16
                    while batch > 1 and batch * L * REF_MIB_PER_STEP_SAMPLE > 0.4 * _available_mib():
                        batch //= 2
                    batches = [batch]
                    ref_batch = batch
                elif ref_batch != 16:  # also at the loop's (reduced) batch: the like-for-like ratio
                    batches = [16, ref_batch]
                for batch in batches:
                    cfg = dict(
                        what=what, device=dev, batch=batch, L=L, d_inner=1024, d_state=16, repeat=1, threads=a.threads
                    )
                    r = _run(cfg, a.timeout)
                    rows.append((dev, what, batch, L, r))
                    print(
                        f"scan fwd+bwd  {dev:4s} {what:8s} B={batch:2d} L={L:5d}: "
                        + (
                            r.get("error")
                            or r.get("skipped")
                            or f"{r['seconds']:8.2f} s  {r['tokens_per_s']:10.0f} tokens/s  peak +{r['peak_extra_mib']:8.0f} MiB"
                        ),
                        flush=True,
                    )
    for what in ("ref", "chunked", "kernel"):  # overhead-bound regime: small per-step tensors
        r = _run(
            dict(what=what, device="cpu", batch=2, L=1000, d_inner=64, d_state=16, repeat=1, threads=a.threads),
            a.timeout,
        )
        rows.append(("cpu-small", what, 2, 1000, r))
        print(
            f"scan fwd+bwd  small {what:8s} B= 2 L= 1000 d_inner=64: "
            + (
                r.get("error")
                or f"{r['seconds']:8.2f} s  {r['tokens_per_s']:10.0f} tokens/s  peak +{r['peak_extra_mib']:8.0f} MiB"
            ),
            flush=True,
        )
    for dev in devices + ["cpu-small"]:
        for L in sorted({LL for *_, LL, _ in rows}):
            here = [(w, b, r) for d, w, b, LL, r in rows if d == dev and LL == L and "seconds" in r]
            ref = [(b, r) for w, b, r in here if w == "ref"]
            if not ref:
                continue
            rb, rr = ref[0]
            for fast in ("chunked", "kernel", "cuda"):
                for b, r in [(b, r) for w, b, r in here if w == fast]:
                    note = "same batch" if b == rb else f"B={b} vs the loop at B={rb}"
                    print(
                        f"speed-up {fast} vs reference ({dev}, L={L}, {note}): "
                        f"{r['tokens_per_s'] / rr['tokens_per_s']:.2f}x (tokens/s ratio)"
                    )
    for dev in devices:
        for fast in ("chunked", "kernel", "cuda"):
            mem = [
                (LL, r["peak_extra_mib"])
                for d, w, b, LL, r in rows
                if d == dev and w == fast and b == 16 and "seconds" in r
            ]
            if len(mem) >= 2:
                (l0, m0), (l1, m1) = mem[0], mem[-1]
                print(f"{fast} memory growth ({dev}): x{m1 / max(m0, 1e-9):.2f} for x{l1 / l0:.1f} length")
    if not a.skip_model:
        for dev, scan in [("cpu", "kernel"), ("cpu", "chunked")] + [("cuda", "auto")] * ("cuda" in devices):
            cfg = dict(what="depmamba", device=dev, batch=16, L=596, repeat=1, threads=a.threads, scan=scan)
            r = _run(cfg, a.timeout)
            print(
                f"DepMamba train step {dev} scan={scan} (D-Vlog dims, B=16, L=596): "
                + (
                    r.get("error")
                    or f"{r['seconds']:.2f} s/step  {r['tokens_per_s']:.0f} tokens/s  "
                    f"peak +{r['peak_extra_mib']:.0f} MiB"
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
