"""Selective scans, kernel dispatch and the Bi-Mamba blocks (depdet.models.mamba)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from depdet.models import bimamba as BM
from depdet.models import mamba as M
from depdet.models.base import seq_lengths

torch.set_num_threads(1)


def _inputs(L, b=2, d=6, n=4, seed=0, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    t = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(
        u=t(b, d, L),
        delta=t(b, d, L) * delta_scale,
        A=-torch.rand(d, n, generator=g) * 3 - 0.1,
        B=t(b, n, L),
        C=t(b, n, L),
        D=t(d),
        z=t(b, d, L),
        delta_bias=t(d),
    )


OPTIONS = [  # (use D, use z, use delta_bias, softplus)
    (True, True, True, True),
    (False, False, False, True),
    (True, False, True, False),
    (False, True, False, False),
]


@pytest.mark.parametrize("L", [1, 7, 63, 64, 65, 200])
@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("chunk", [16, 64])
def test_chunked_matches_sequential_outputs_and_grads(L, opts, chunk):
    use_D, use_z, use_bias, softplus = opts
    x = _inputs(L)
    if not softplus:  # delta >= 0 as after a softplus (negative deltas: see the test below)
        x["delta"] = x["delta"].abs() * 0.5
        x["delta_bias"] = x["delta_bias"].abs() * 0.1
    args = {k: v.clone().requires_grad_() for k, v in x.items()}
    kw = dict(
        D=args["D"] if use_D else None,
        z=args["z"] if use_z else None,
        delta_bias=args["delta_bias"] if use_bias else None,
        delta_softplus=softplus,
    )
    y_ref = M.selective_scan_ref(args["u"], args["delta"], args["A"], args["B"], args["C"], **kw)
    y_chk = M.selective_scan_chunked(args["u"], args["delta"], args["A"], args["B"], args["C"], chunk_size=chunk, **kw)
    torch.testing.assert_close(y_chk, y_ref, rtol=1e-4, atol=1e-5)
    names = ["u", "delta", "A", "B", "C"] + [
        k for k, on in (("D", use_D), ("z", use_z), ("delta_bias", use_bias)) if on
    ]
    g = torch.randn_like(y_ref)
    g_ref = torch.autograd.grad(y_ref, [args[k] for k in names], g)
    g_chk = torch.autograd.grad(y_chk, [args[k] for k in names], g)
    for name, a, b in zip(names, g_chk, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"grad {name}: {m}")


def test_mildly_negative_deltas_match():
    # no softplus: some deltas < 0 (growing states); chunk bounds use |delta| so this stays exact
    x = _inputs(90)
    d = x["delta"] * 0.05
    y_ref = M.selective_scan_ref(x["u"], d, x["A"], x["B"], x["C"], x["D"], x["z"])
    y_chk = M.selective_scan_chunked(x["u"], d, x["A"], x["B"], x["C"], x["D"], x["z"], chunk_size=32)
    assert (d < 0).any() and torch.isfinite(y_ref).all()
    torch.testing.assert_close(y_chk, y_ref, rtol=1e-4, atol=1e-5)


def test_grads_through_last_state_and_single_chunk_autograd_form():
    x = _inputs(70)
    grads = []
    for fn in (M.selective_scan_ref, M.selective_scan_chunked):
        args = {k: v.clone().requires_grad_() for k, v in x.items()}
        kw = dict(chunk_size=16) if fn is M.selective_scan_chunked else {}
        y, h = fn(
            args["u"],
            args["delta"],
            args["A"],
            args["B"],
            args["C"],
            args["D"],
            args["z"],
            args["delta_bias"],
            True,
            return_last_state=True,
            **kw,
        )
        (y.square().sum() + (h * 3).sum()).backward()
        grads.append([args[k].grad for k in ("u", "delta", "A", "B", "C", "delta_bias")])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the plain-autograd chunk (M._scan_chunk) agrees with the sequential reference on one chunk
    d = torch.nn.functional.softplus(x["delta"][..., :10])
    y1, h1 = M._scan_chunk(
        x["u"][..., :10].transpose(1, 2),
        d.transpose(1, 2),
        x["A"],
        x["B"][..., :10].transpose(1, 2),
        x["C"][..., :10].transpose(1, 2),
        torch.zeros(2, 6, 4),
    )
    y1 = y1.transpose(1, 2)
    y2, h2 = M.selective_scan_ref(
        x["u"][..., :10], d, x["A"], x["B"][..., :10], x["C"][..., :10], return_last_state=True
    )
    torch.testing.assert_close(y1, y2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h1, h2, rtol=1e-4, atol=1e-5)


def test_steep_decays_split_chunks_and_stay_exact():
    # delta ~ 5 with |A| up to 3: one step's exponent ~15, so chunks must be split to stay <= 32
    x = _inputs(100, delta_scale=1.0)
    x["delta"] = x["delta"].abs() * 5
    bounds = M._chunk_bounds(x["delta"], x["A"], 64)
    assert max(b - a for a, b in bounds) < 64
    assert bounds[0][0] == 0 and bounds[-1][1] == 100
    assert all(b1[1] == b2[0] for b1, b2 in zip(bounds, bounds[1:]))
    y_ref = M.selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"])
    y_chk = M.selective_scan_chunked(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"])
    assert torch.isfinite(y_chk).all()
    torch.testing.assert_close(y_chk, y_ref, rtol=1e-4, atol=1e-5)


def test_last_state_matches():
    x = _inputs(77)
    _, h_ref = M.selective_scan_ref(
        x["u"], x["delta"], x["A"], x["B"], x["C"], delta_softplus=True, return_last_state=True
    )
    _, h_chk = M.selective_scan_chunked(
        x["u"], x["delta"], x["A"], x["B"], x["C"], delta_softplus=True, return_last_state=True, chunk_size=16
    )
    torch.testing.assert_close(h_chk, h_ref, rtol=1e-4, atol=1e-5)


def test_zero_delta_passes_state_unchanged():
    x = _inputs(20)
    d = torch.nn.functional.softplus(x["delta"])
    d2 = d.clone()
    d2[..., 5:9] = 0
    u2 = x["u"].clone()
    u2[..., 5:9] = 123.0  # ignored: delta 0 means no input enters the state
    _, h1 = M.selective_scan_chunked(
        x["u"][..., [*range(5), *range(9, 20)]],
        d[..., [*range(5), *range(9, 20)]],
        x["A"],
        x["B"][..., [*range(5), *range(9, 20)]],
        x["C"][..., [*range(5), *range(9, 20)]],
        return_last_state=True,
    )
    _, h2 = M.selective_scan_chunked(u2, d2, x["A"], x["B"], x["C"], return_last_state=True)
    torch.testing.assert_close(h1, h2, rtol=1e-5, atol=1e-6)


# ---- dispatch ------------------------------------------------------------------------------------
def test_cuda_kernels_absent_here_means_pytorch_path(monkeypatch):
    M._cuda_selective_scan_fn.cache_clear()
    M._cuda_causal_conv1d_fn.cache_clear()
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "causal_conv1d", None)
    try:
        assert M._cuda_selective_scan_fn() is None
        assert M._cuda_causal_conv1d_fn() is None
        assert not M.use_cuda_scan(types.SimpleNamespace(is_cuda=True))
        assert not M.use_cuda_conv(types.SimpleNamespace(is_cuda=True))
    finally:
        M._cuda_selective_scan_fn.cache_clear()
        M._cuda_causal_conv1d_fn.cache_clear()


def test_dispatch_uses_kernel_only_on_cuda(monkeypatch):
    calls = []

    def fake_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        calls.append(("scan", delta_softplus))
        return torch.zeros_like(u)

    def fake_conv(x, weight, bias=None, activation=None):
        calls.append(("conv", activation))
        return torch.zeros_like(x)

    monkeypatch.setattr(M, "_cuda_selective_scan_fn", lambda: fake_scan)
    monkeypatch.setattr(M, "_cuda_causal_conv1d_fn", lambda: fake_conv)
    x = _inputs(10)
    # CPU tensors: never the kernel, even when importable
    assert not M.use_cuda_scan(x["u"]) and not M.use_cuda_conv(x["u"])
    y = M.selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    torch.testing.assert_close(
        y,
        M.selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True),
        rtol=1e-4,
        atol=1e-5,
    )
    assert calls == []
    assert M.use_cuda_scan(types.SimpleNamespace(is_cuda=True))
    assert M.use_cuda_conv(types.SimpleNamespace(is_cuda=True))
    # pretend the tensors are on CUDA: the kernel is called with the same arguments
    monkeypatch.setattr(M, "use_cuda_scan", lambda t: True)
    monkeypatch.setattr(M, "use_cuda_conv", lambda t: True)
    assert (M.selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_softplus=True) == 0).all()
    assert (M.causal_conv1d(x["u"], torch.randn(6, 4), None, "silu") == 0).all()
    assert calls == [("scan", True), ("conv", "silu")]


def test_causal_conv_fallback_matches_truncated_conv1d():
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, 4, groups=6, padding=3)
    x = torch.randn(2, 6, 11)
    ref = torch.nn.functional.silu(conv(x)[..., :11])
    torch.testing.assert_close(M.causal_conv1d(x, conv.weight.squeeze(1), conv.bias, "silu"), ref)
    # causal: output at t does not depend on inputs after t
    x2 = x.clone()
    x2[..., 7:] = 5.0
    assert torch.equal(
        M.causal_conv1d(x2, conv.weight.squeeze(1), conv.bias)[..., :7],
        M.causal_conv1d(x, conv.weight.squeeze(1), conv.bias)[..., :7],
    )


# ---- masks, flips, blocks ------------------------------------------------------------------------
def test_flip_within_valid_span():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    lengths = seq_lengths(mask)
    assert lengths.tolist() == [3, 5, 0]
    x = torch.arange(15.0).view(3, 1, 5)
    idx = M.flip_index(lengths, 5)
    assert M.flip_within(x, idx)[:, 0].tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5], [10, 11, 12, 13, 14]]
    assert torch.equal(M.flip_within(M.flip_within(x, idx), idx), x)


def _pad(x, mask, k):
    return (
        torch.cat([x, torch.randn(x.shape[0], k, x.shape[2]) * 0], 1),
        torch.cat([mask, torch.zeros(mask.shape[0], k, dtype=torch.bool)], 1),
    )


@pytest.mark.parametrize("cls", [BM.BiMamba, M.MambaMixer])
def test_block_padding_invariance(cls):
    torch.manual_seed(0)
    blk = cls(16, d_state=4, expand=2)
    x = torch.randn(2, 20, 16)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 13:] = False
    x = x * mask[..., None]
    y1 = blk(x, mask)
    y2 = blk(*_pad(x, mask, 31))[:, :20]
    y3 = blk(x[1:, :13], mask[1:, :13])
    torch.testing.assert_close(y2 * mask[..., None], y1 * mask[..., None], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y1[1:, :13], y3, rtol=1e-5, atol=1e-6)


def test_leaky_padding_reproduces_original_and_differs_with_padding():
    torch.manual_seed(0)
    fixed = BM.BiMamba(16, d_state=4, expand=2)
    leaky = BM.BiMamba(16, d_state=4, expand=2, leaky_padding=True)
    leaky.load_state_dict(fixed.state_dict())
    x = torch.randn(1, 12, 16)
    full = torch.ones(1, 12, dtype=torch.bool)
    torch.testing.assert_close(leaky(x, full), fixed(x, full))  # no padding: the same block
    xp, mp = _pad(x, full, 9)
    assert not torch.allclose(leaky(xp, mp)[:, :12], fixed(x, full), atol=1e-4)
    torch.testing.assert_close(fixed(xp, mp)[:, :12], fixed(x, full), rtol=1e-5, atol=1e-6)


def test_collaborative_bimamba_shares_only_A():
    blk = BM.CollaborativeBiMamba(16, 2, d_state=4, expand=2)
    names = {n for n, _ in blk.named_parameters()}
    shared = {n for n in names if not (n.count(".") and n.split(".")[1].isdigit())}
    assert shared == {"A_log", "A_b_log"}
    assert blk.fwd[0].x_proj.weight is not blk.fwd[1].x_proj.weight
    assert blk.A_log.shape == (32, 4)
    # S4D-real init and Mamba dt init
    torch.testing.assert_close(-torch.exp(blk.A_log[0]), -torch.arange(1.0, 5.0))
    dt = torch.nn.functional.softplus(blk.fwd[0].dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert blk.fwd[0].dt_proj.weight.shape == (32, 1)  # dt_rank = ceil(16/16) = 1
    xs = [torch.randn(2, 9, 16), torch.randn(2, 9, 16)]
    masks = [torch.ones(2, 9, dtype=torch.bool)] * 2
    outs = blk(xs, masks)
    assert [o.shape for o in outs] == [(2, 9, 16), (2, 9, 16)]
    sum(o.sum() for o in outs).backward()
    assert blk.A_log.grad is not None and blk.A_b_log.grad is not None


def test_masked_batchnorm_ignores_padding_in_train_stats():
    torch.manual_seed(0)
    from depdet.models.layers import MaskedBatchNorm1d

    bn1, bn2 = MaskedBatchNorm1d(3), MaskedBatchNorm1d(3)
    x = torch.randn(2, 3, 10)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    y1 = bn1(x, mask)
    xp = torch.cat([x, torch.randn(2, 3, 20) * 7], 2)
    y2 = bn2(xp, torch.cat([mask, torch.zeros(2, 20, dtype=torch.bool)], 1))
    torch.testing.assert_close(y1 * mask[:, None], y2[..., :10] * mask[:, None])
    torch.testing.assert_close(bn1.running_mean, bn2.running_mean)
    torch.testing.assert_close(bn1.running_var, bn2.running_var)
    # valid steps only: equals plain BN on the concatenated valid steps
    ref = nn.BatchNorm1d(3)
    valid = torch.cat([x[0, :, :6], x[1]], 1)[None]
    ref(valid)
    torch.testing.assert_close(bn1.running_mean, ref.running_mean)
    torch.testing.assert_close(bn1.running_var, ref.running_var)
