"""The compiled CPU depthwise causal conv (scan_kernel.causal_conv1d_kernel) against the F.conv1d path."""

from __future__ import annotations

import pytest
import torch

from depdet.models import bimamba as BM
from depdet.models import mamba as M
from depdet.models import scan_kernel as K

torch.set_num_threads(1)

needs_kernel = pytest.mark.skipif(not K.available(), reason=f"CPU scan kernel not built: {K.build_error()}")


def _reference(monkeypatch, x, w, b, activation, reverse):
    """mamba.causal_conv1d on its PyTorch path (F.conv1d + F.silu): $DEPDET_SCAN=chunked."""
    with monkeypatch.context() as m:
        m.setenv(K.ENV_BACKEND, "chunked")
        return M.causal_conv1d(x, w, b, activation, reverse)


def _values_and_grads(fn, x, w, b, seed=1):
    """fn's output and the gradients of sum(y * gy) for x, w and b (b may be None)."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w) + (() if b is None else (b,))]
    y = fn(*leaves[:2], leaves[2] if b is not None else None)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    return y, torch.autograd.grad((y * gy).sum(), leaves)


def _inputs(L, k, bsz=2, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bsz, dim, L, generator=g), torch.randn(dim, k, generator=g), torch.randn(dim, generator=g)


def _assert_matches(monkeypatch, x, w, b, activation, reverse, atol=1e-5):
    y_ref, g_ref = _values_and_grads(lambda *a: _reference(monkeypatch, *a, activation, reverse), x, w, b)
    y_k, g_k = _values_and_grads(lambda *a: K.causal_conv1d_kernel(*a, activation, reverse), x, w, b)
    torch.testing.assert_close(y_k, y_ref, rtol=1e-5, atol=atol)
    for name, a, r in zip(("x", "weight", "bias"), g_k, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=atol, msg=lambda m, name=name: f"grad {name}: {m}")


@needs_kernel
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("L", [1, 2, 3, 5, 64, 301])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("activation", ["silu", None])
def test_kernel_matches_conv1d_values_and_grads(monkeypatch, k, L, reverse, activation):
    # L: shorter than the taps, one partial vector of 16 steps, whole vectors, several plus a tail
    x, w, b = _inputs(L, k, seed=1000 * k + L)
    _assert_matches(monkeypatch, x, w, b, activation, reverse)


@needs_kernel
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_without_bias(monkeypatch, reverse):
    x, w, _ = _inputs(37, 4)
    _assert_matches(monkeypatch, x, w, None, "silu", reverse)


@needs_kernel
@pytest.mark.parametrize("layout", ["time_major", "sliced"])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_reads_strided_x_and_gradient(monkeypatch, layout, reverse):
    """x (and the incoming gradient) with other [b, d, t] strides: a transposed (B, L, D) view (what
    MambaMixer passes without a mask) and a view sliced along d and t; the same values as a copy."""
    g = torch.Generator().manual_seed(3)
    if layout == "time_major":
        x = torch.randn(2, 45, 12, generator=g).transpose(1, 2)[:, :6]  # strides (540, 1, 12)
    else:
        x = torch.randn(2, 12, 90, generator=g)[:, ::2, ::2]  # strides (1080, 180, 2)
    assert not x.is_contiguous() and x.shape == (2, 6, 45)
    w, b = torch.randn(6, 4, generator=g), torch.randn(6, generator=g)
    _assert_matches(monkeypatch, x, w, b, "silu", reverse)
    # a transposed incoming gradient: gy reaches the backward as a strided view
    xs, xc = x.clone().requires_grad_(), x.contiguous().requires_grad_()
    G = torch.randn(2, x.shape[2], 6, generator=g)
    for t in (xs, xc):
        (K.causal_conv1d_kernel(t, w, b, "silu", reverse).transpose(1, 2) * G).sum().backward()
    torch.testing.assert_close(xs.grad, xc.grad, rtol=0, atol=0)
    xr = xc.detach().clone().requires_grad_()
    (_reference(monkeypatch, xr, w, b, "silu", reverse).transpose(1, 2) * G).sum().backward()
    torch.testing.assert_close(xs.grad, xr.grad, rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("threads", [2, 3, 4, 9])
def test_kernel_threads_split_channels_without_changing_results(monkeypatch, threads):
    # each channel's sums run in the same order whatever thread owns it: identical bits (7 channels:
    # uneven splits, and more threads than channels)
    x, w, b = _inputs(50, 4, bsz=3, dim=7)
    one = _values_and_grads(lambda *a: K.causal_conv1d_kernel(*a, "silu", True), x, w, b)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    many = _values_and_grads(lambda *a: K.causal_conv1d_kernel(*a, "silu", True), x, w, b)
    for a, c in zip((one[0], *one[1]), (many[0], *many[1])):
        assert torch.equal(a, c)


@needs_kernel
def test_kernel_silu_saturates_without_nan(monkeypatch):
    x = torch.linspace(-300, 300, 40).expand(2, 6, 40).contiguous()
    w, b = torch.ones(6, 4), torch.zeros(6)
    _assert_matches(monkeypatch, x, w, b, "silu", False, atol=1e-4)
    y, grads = _values_and_grads(lambda *a: K.causal_conv1d_kernel(*a, "silu", False), x, w, b)
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)


@needs_kernel
def test_kernel_empty_sequence(monkeypatch):
    x, w, b = _inputs(0, 4)
    y, (gx, gw, gb) = _values_and_grads(lambda *a: K.causal_conv1d_kernel(*a, "silu", False), x, w, b)
    assert y.shape == (2, 6, 0) and gx.shape == (2, 6, 0)
    assert torch.equal(gw, torch.zeros(6, 4)) and torch.equal(gb, torch.zeros(6))


@needs_kernel
def test_kernel_rejects_other_dtypes_and_shapes():
    x, w, b = _inputs(10, 4)
    with pytest.raises(ValueError, match="float32"):
        K.causal_conv1d_kernel(x.double(), w.double(), b.double())
    with pytest.raises(ValueError, match="shapes"):
        K.causal_conv1d_kernel(x, w[:5], b)


@needs_kernel
def test_dispatch_kernel_on_cpu_float32_only(monkeypatch):
    calls = []
    real = K.causal_conv1d_kernel
    monkeypatch.setattr(K, "causal_conv1d_kernel", lambda *a: calls.append(a[0].dtype) or real(*a))
    x, w, b = _inputs(20, 4)
    monkeypatch.setenv(K.ENV_BACKEND, "kernel")
    y = M.causal_conv1d(x, w, b, "silu", reverse=True)
    assert calls == [torch.float32]
    M.causal_conv1d(x.double(), w.double(), b.double(), "silu")  # float64: the F.conv1d path
    assert calls == [torch.float32]
    monkeypatch.setenv(K.ENV_BACKEND, "chunked")
    y_ref = M.causal_conv1d(x, w, b, "silu", reverse=True)
    assert calls == [torch.float32]
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)


def _grads_of(model_fn, params, backend, monkeypatch):
    monkeypatch.setenv(K.ENV_BACKEND, backend)
    for p in params.values():
        p.grad = None
    out = model_fn()
    out.backward()
    return out.detach(), {n: p.grad.clone() for n, p in params.items()}


@needs_kernel
@pytest.mark.parametrize("leaky", [False, True])
def test_bimamba_forward_backward_agree_on_kernel_and_chunked(monkeypatch, leaky):
    torch.manual_seed(0)
    blk = BM.BiMamba(16, d_state=12, expand=2, leaky_padding=leaky)
    x = torch.randn(3, 41, 16)
    mask = torch.arange(41)[None] < torch.tensor([41, 30, 9])[:, None]
    x = x * mask[..., None]
    wts = torch.linspace(-1, 1, 16)
    params = dict(blk.named_parameters())
    fn = lambda: (blk(x, mask) * wts).sum()  # noqa: E731
    a, ga = _grads_of(fn, params, "kernel", monkeypatch)
    b, gb = _grads_of(fn, params, "chunked", monkeypatch)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for n in params:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-4, atol=1e-4, msg=lambda m, n=n: f"grad {n}: {m}")


@needs_kernel
def test_depmamba_forward_backward_agree_on_kernel_and_chunked(monkeypatch):
    from depdet.models import create_model

    torch.manual_seed(0)
    model = create_model("depmamba", {"visual": 10, "audio": 6}, d_model=16, d_state=12).train()
    inputs = {"visual": torch.randn(3, 50, 10), "audio": torch.randn(3, 50, 6)}
    masks = {m: torch.arange(50)[None] < torch.tensor([50, 31, 7])[:, None] for m in inputs}
    labels = torch.tensor([0.0, 1.0, 1.0])
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def loss():
        torch.manual_seed(1)  # the same dropout masks on both paths
        return model.loss(model(inputs, masks), labels)

    a, ga = _grads_of(loss, params, "kernel", monkeypatch)
    b, gb = _grads_of(loss, params, "chunked", monkeypatch)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    conv = [n for n in params if "conv1d" in n]
    assert conv, "no depthwise conv parameters found"
    for n in params:
        torch.testing.assert_close(ga[n], gb[n], rtol=1e-3, atol=1e-4, msg=lambda m, n=n: f"grad {n}: {m}")
