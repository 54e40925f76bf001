"""CUDA checks, run by `bench/gpu.sh` on a machine with an NVIDIA GPU; skipped everywhere else.

Never required: no test elsewhere depends on these. They check that the CUDA code paths give the
CPU reference's numbers: the chunked PyTorch scan on CUDA tensors (outputs and gradients), mamba-ssm's
kernel when it is installed, and a DepMamba forward/backward on CUDA against the same weights on CPU.
"""

from __future__ import annotations

import pytest
import torch

from depdet.models import mamba as M

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (run bench/gpu.sh on a GPU machine)")
pytestmark = [pytest.mark.cuda, cuda]


def _inputs(L, b=2, d=32, n=16, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    t = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    x = dict(
        u=t(b, d, L),
        delta=t(b, d, L),
        A=-torch.rand(d, n, generator=g, dtype=torch.float64) * 3 - 0.1,
        B=t(b, n, L),
        C=t(b, n, L),
        D=t(d),
        z=t(b, d, L),
        delta_bias=t(d),
    )
    return {k: v.to(device) for k, v in x.items()}


@pytest.mark.parametrize("L", [1, 63, 257, 1000])
def test_chunked_scan_on_cuda_matches_the_cpu_reference(L):
    ref_in = {k: v.clone().requires_grad_() for k, v in _inputs(L).items()}
    gpu_in = {k: v.detach().float().cuda().requires_grad_() for k, v in ref_in.items()}
    kw = lambda a: dict(D=a["D"], z=a["z"], delta_bias=a["delta_bias"], delta_softplus=True)  # noqa: E731
    y_ref = M.selective_scan_ref(ref_in["u"], ref_in["delta"], ref_in["A"], ref_in["B"], ref_in["C"], **kw(ref_in))
    y_gpu = M.selective_scan_chunked(gpu_in["u"], gpu_in["delta"], gpu_in["A"], gpu_in["B"], gpu_in["C"], **kw(gpu_in))
    torch.testing.assert_close(y_gpu.double().cpu(), y_ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(y_ref)
    names = list(ref_in)
    g_ref = torch.autograd.grad(y_ref, [ref_in[k] for k in names], g)
    g_gpu = torch.autograd.grad(y_gpu, [gpu_in[k] for k in names], g.float().cuda())
    for name, a, b in zip(names, g_gpu, g_ref):
        torch.testing.assert_close(
            a.double().cpu(), b, rtol=2e-3, atol=2e-3, msg=lambda m, name=name: f"grad {name}: {m}"
        )


def test_mamba_ssm_kernel_matches_the_reference_when_installed():
    fn = M._cuda_selective_scan_fn()
    if fn is None:
        pytest.skip("mamba-ssm is not installed (the optional [cuda] extra)")
    x = _inputs(300)
    y_ref = M.selective_scan_ref(
        x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"], delta_bias=x["delta_bias"], delta_softplus=True
    )
    c = {k: v.float().cuda() for k, v in x.items()}
    y = fn(c["u"], c["delta"], c["A"], c["B"], c["C"], c["D"], c["z"], c["delta_bias"], True)
    torch.testing.assert_close(y.double().cpu(), y_ref, rtol=1e-3, atol=1e-3)


def test_depmamba_on_cuda_matches_cpu_logits_and_grads():
    from depdet.models import create_model

    torch.manual_seed(0)
    dims = {"visual": 136, "audio": 25}
    model = create_model("depmamba", dims, d_state=12).eval()  # no dropout: both passes see the same network
    B, L = 3, 200
    inputs = {m: torch.randn(B, L, d) for m, d in dims.items()}
    masks = {m: torch.ones(B, L, dtype=torch.bool) for m in dims}
    for m in masks.values():
        m[1, 150:] = False
        m[2, 90:] = False
    out_cpu = model(inputs, masks).logits
    out_cpu.sum().backward()
    g_cpu = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    gm = model.cuda()
    out_gpu = gm({m: x.cuda() for m, x in inputs.items()}, {m: x.cuda() for m, x in masks.items()}).logits
    out_gpu.sum().backward()
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-3, atol=1e-3)
    for n, p in gm.named_parameters():
        if n in g_cpu:
            torch.testing.assert_close(
                p.grad.cpu(), g_cpu[n], rtol=1e-2, atol=1e-3, msg=lambda m, n=n: f"grad {n}: {m}"
            )
