"""The compiled CPU selective-scan kernel (depdet.models.scan_kernel) against the sequential reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depdet.models import bimamba as BM
from depdet.models import mamba as M
from depdet.models import scan_kernel as K
from depdet.models.base import seq_lengths

torch.set_num_threads(1)

needs_kernel = pytest.mark.skipif(not K.available(), reason=f"CPU scan kernel not built: {K.build_error()}")


@pytest.fixture
def unloaded(monkeypatch):
    """The kernel module as if nothing had been built or loaded in this process (restored after)."""
    monkeypatch.setattr(K, "_lib", None)
    monkeypatch.setattr(K, "_error", None)
    monkeypatch.setattr(K, "_tried", False)


def _inputs(L, b=2, d=6, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(
        u=t(b, d, L),
        delta=t(b, d, L),
        A=-torch.rand(d, n, generator=g) * 3 - 0.1,
        B=t(b, n, L),
        C=t(b, n, L),
        D=t(d),
        z=t(b, d, L),
        delta_bias=t(d),
    )


def _run(fn, x, names, **kw):
    args = {k: v.clone().requires_grad_() for k, v in x.items()}
    y, h = fn(
        args["u"],
        args["delta"],
        args["A"],
        args["B"],
        args["C"],
        args.get("D"),
        args.get("z"),
        args.get("delta_bias"),
        True,
        return_last_state=True,
        **kw,
    )
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    gh = torch.randn(h.shape, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), [args[k] for k in names])
    return y, h, dict(zip(names, grads))


def _assert_kernel_matches_reference(x):
    """Outputs, last state and the gradients of every input in x: kernel vs sequential loop."""
    names = list(x)
    y_ref, h_ref, g_ref = _run(M.selective_scan_ref, x, names)
    y_k, h_k, g_k = _run(M.selective_scan_cpu, x, names)
    torch.testing.assert_close(y_k, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h_k, h_ref, rtol=1e-4, atol=1e-5)
    for name in names:
        torch.testing.assert_close(
            g_k[name], g_ref[name], rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"grad {name}: {m}"
        )


@needs_kernel
@pytest.mark.parametrize("L", [1, 2, 17, 64, 301])
@pytest.mark.parametrize("n", [1, 4, 12, 16, 20, 33])
def test_kernel_matches_sequential_outputs_last_state_and_grads(L, n):
    # n: below, at and above the kernel's 16-state block (padding and several blocks)
    x = _inputs(L, n=n, seed=L * 100 + n)
    _assert_kernel_matches_reference(x)


@needs_kernel
@pytest.mark.parametrize("L", [1, 16, 45])
@pytest.mark.parametrize("drop", [("D",), ("z",), ("D", "z"), ("delta_bias",)])
def test_kernel_fused_skip_and_gate_are_optional(L, drop):
    # D and z are fused into the kernel: each may be absent (vector body and scalar tail of a row)
    x = {k: v for k, v in _inputs(L, n=12, seed=L).items() if k not in drop}
    _assert_kernel_matches_reference(x)


@needs_kernel
def test_kernel_gate_saturates_without_nan():
    x = _inputs(20, n=4)
    x["z"] = torch.linspace(-200, 200, 20).expand(2, 6, 20).contiguous()
    args = {k: v.clone().requires_grad_() for k, v in x.items()}
    y = M.selective_scan_cpu(
        args["u"], args["delta"], args["A"], args["B"], args["C"], args["D"], args["z"], args["delta_bias"], True
    )
    y.sum().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(args[k].grad).all() for k in args)
    ref = M.selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("threads", [2, 3, 7])
@pytest.mark.parametrize("d", [5, 40])
def test_kernel_threads_split_channels_without_changing_results(threads, d):
    # more threads than one; d=5: one group of 16 channel lanes, more threads than groups; d=40: two
    # full groups and a partial one, split unevenly (3 threads: one group each; 2: two and one)
    x = _inputs(40, b=3, d=d, n=12, seed=7)
    names = list(x)
    old = torch.get_num_threads()
    try:
        y1, h1, g1 = _run(M.selective_scan_cpu, x, names)
        torch.set_num_threads(threads)
        y2, h2, g2 = _run(M.selective_scan_cpu, x, names)
    finally:
        torch.set_num_threads(old)
    torch.testing.assert_close(y2, y1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h2, h1, rtol=1e-6, atol=1e-6)
    for name in names:  # gB/gC are summed over per-thread partials: same up to rounding
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-5, atol=1e-5)


@needs_kernel
def test_kernel_exp_is_accurate_and_clamped():
    x = torch.linspace(-87, 88, 16 * 4096)
    out = torch.empty_like(x)
    K._load().depdet_scan_exp(x.data_ptr(), out.data_ptr(), x.numel())
    rel = ((out.double() - torch.exp(x.double())) / torch.exp(x.double())).abs()
    assert rel.max() < 3e-7
    far = torch.tensor([-1e4, -200.0, -100.0, -88.0] * 4)
    out = torch.empty_like(far)
    K._load().depdet_scan_exp(far.data_ptr(), out.data_ptr(), far.numel())
    assert torch.isfinite(out).all() and (out >= 0).all() and (out < 2e-38).all()


@needs_kernel
def test_kernel_zero_delta_passes_state_and_empty_sequence():
    x = _inputs(12)
    delta = torch.full_like(x["delta"], 0.3)
    delta[..., 5:] = 0.0  # masked steps: state unchanged
    _, h_full = M.selective_scan_cpu(x["u"], delta, x["A"], x["B"], x["C"], return_last_state=True)
    _, h_five = M.selective_scan_cpu(
        x["u"][..., :5], delta[..., :5], x["A"], x["B"][..., :5], x["C"][..., :5], return_last_state=True
    )
    torch.testing.assert_close(h_full, h_five)
    y0, h0 = M.selective_scan_cpu(
        x["u"][..., :0], x["delta"][..., :0], x["A"], x["B"][..., :0], x["C"][..., :0], return_last_state=True
    )
    assert y0.shape == (2, 6, 0) and (h0 == 0).all()


@needs_kernel
def test_dispatch_prefers_kernel_on_cpu_and_env_overrides(monkeypatch):
    x = _inputs(30)
    monkeypatch.delenv(K.ENV_BACKEND, raising=False)
    assert M.scan_backend(x["u"]) == "kernel"
    monkeypatch.setenv(K.ENV_BACKEND, "chunked")
    assert M.scan_backend(x["u"]) == "chunked"
    monkeypatch.setenv(K.ENV_BACKEND, "kernel")
    assert M.scan_backend(x["u"]) == "kernel"
    monkeypatch.setenv(K.ENV_BACKEND, "fastest")
    with pytest.raises(ValueError, match="auto, kernel or chunked"):
        M.scan_backend(x["u"])


def test_no_compiler_falls_back_to_chunked(monkeypatch, tmp_path, unloaded):
    monkeypatch.setattr(K, "_compiler", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(K.ENV_BACKEND, raising=False)
    x = _inputs(20)
    assert not K.available() and "no C compiler" in K.build_error()
    assert M.scan_backend(x["u"]) == "chunked"
    y = M.selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    torch.testing.assert_close(
        y,
        M.selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True),
        rtol=1e-4,
        atol=1e-5,
    )
    monkeypatch.setenv(K.ENV_BACKEND, "kernel")
    with pytest.raises(RuntimeError, match="cannot be built"):
        M.scan_backend(x["u"])


def test_broken_compiler_output_falls_back(monkeypatch, tmp_path, unloaded):
    # a "compiler" that fails: the error is kept, nothing half-written stays in the cache
    monkeypatch.setattr(K, "_compiler", lambda: "false")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert not K.available()
    assert "false failed" in K.build_error()
    assert list((tmp_path / "depdet" / "kernels").iterdir()) == []


@needs_kernel
def test_build_is_cached_and_atomic(monkeypatch, tmp_path, unloaded):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert K.available()
    files = sorted(p.name for p in (tmp_path / "depdet" / "kernels").iterdir())
    assert len(files) == 2 and files[0].startswith("scan_kernel-") and files[0].endswith(".so")
    assert files[1] == files[0] + ".sha256"  # the recorded digest a cached library must match
    calls = []
    monkeypatch.setattr(K.subprocess, "run", lambda *a, **k: calls.append(a))
    assert K._build(K._compiler()).name == files[0] and calls == []  # found in the cache, no compile


@needs_kernel
def test_models_agree_on_kernel_and_chunked_paths(monkeypatch):
    from depdet.models import create_model

    torch.manual_seed(0)
    model = create_model("depmamba", {"visual": 10, "audio": 6}, d_model=16, d_state=12).eval()
    inputs = {"visual": torch.randn(3, 50, 10), "audio": torch.randn(3, 50, 6)}
    masks = {m: torch.arange(50)[None] < torch.tensor([50, 31, 7])[:, None] for m in inputs}
    monkeypatch.setenv(K.ENV_BACKEND, "kernel")
    a = model(inputs, masks)
    monkeypatch.setenv(K.ENV_BACKEND, "chunked")
    b = model(inputs, masks)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-5)


@needs_kernel
def test_unwritable_cache_builds_in_temp_folder(monkeypatch, tmp_path, unloaded):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")  # the cache path runs through a file: mkdir fails even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(K.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert K.available()
    assert K.library_path().startswith(str(tmp_path / "tmp"))


# ---------------------------------------------------------------- kernel options (issue 11, part 3)
def _run_opts(fn, x, names, **kw):
    """Like _run, with the options (mask, reverse_lengths, delta_softplus, layouts) passed through."""
    args = {k: v.clone().requires_grad_() for k, v in x.items()}
    y, h = fn(
        args["u"],
        args["delta"],
        args["A"],
        args["B"],
        args["C"],
        args.get("D"),
        args.get("z"),
        args.get("delta_bias"),
        kw.pop("delta_softplus", True),
        return_last_state=True,
        **kw,
    )
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    gh = torch.randn(h.shape, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), [args[k] for k in names])
    return y, h, dict(zip(names, grads))


def _assert_same(a, b, names, rtol=1e-4, atol=1e-4):
    (ya, ha, ga), (yb, hb, gb) = a, b
    torch.testing.assert_close(ya, yb, rtol=rtol, atol=1e-5)
    torch.testing.assert_close(ha, hb, rtol=rtol, atol=1e-5)
    for name in names:
        torch.testing.assert_close(
            ga[name], gb[name], rtol=rtol, atol=atol, msg=lambda m, name=name: f"grad {name}: {m}"
        )


def _flipped_reference(x, lengths, mask=None):
    """The meaning of reverse_lengths (and mask), spelled out: gather-flip every input within each
    sample's span, mask delta after bias + softplus, run the sequential loop, gather-flip y back."""

    def fn(u, delta, A, B, C, D, z, delta_bias, softplus, return_last_state):
        L = u.shape[-1]
        d = M._prep_delta(delta, delta_bias, softplus)
        if mask is not None:
            d = d * mask[:, None, :]
        idx = M.flip_index(lengths, L)
        f = lambda t: None if t is None else M.flip_within(t, idx)  # noqa: E731
        y, h = M.selective_scan_ref(f(u), f(d), A, f(B), f(C), D, f(z), return_last_state=True)
        return M.flip_within(y, idx), h

    return fn


@needs_kernel
@pytest.mark.parametrize("L", [1, 5, 16, 37])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("d", [6, 20])
def test_kernel_reversed_spans_match_flipping_by_gather(L, with_mask, d):
    # per-sample lengths: empty span, one step, partial spans, the whole length; d=20: a full group
    # of 16 channels, whose (B, D, L) rows are transposed 16 steps at a time (ascending, descending
    # and the block where a reversed span ends), and a partial one
    x = _inputs(L, b=4, d=d, n=12, seed=L)
    lengths = torch.tensor([0, 1, max(1, L // 2), L])
    mask = None
    if with_mask:
        mask = torch.rand(4, L, generator=torch.Generator().manual_seed(L)) > 0.3
    names = list(x)
    want = _run_opts(_flipped_reference(x, lengths, mask), x, names)
    got = _run_opts(M.selective_scan_cpu, x, names, reverse_lengths=lengths, mask=mask)
    _assert_same(got, want, names)
    # the PyTorch meaning of the options (chunked path, the reference loop) is the same
    _assert_same(_run_opts(M.selective_scan_chunked, x, names, reverse_lengths=lengths, mask=mask), want, names)
    _assert_same(_run_opts(M.selective_scan_ref, x, names, reverse_lengths=lengths, mask=mask), want, names)


@needs_kernel
@pytest.mark.parametrize("L", [3, 16, 45])
def test_kernel_mask_zeroes_delta_after_softplus(L):
    x = _inputs(L, n=4, seed=3 * L)
    mask = torch.rand(2, L, generator=torch.Generator().manual_seed(9)) > 0.5
    mask[:, 0] = False
    names = list(x)
    want = _run_opts(_flipped_reference(x, torch.zeros(2, dtype=torch.long), mask), x, names)
    _assert_same(_run_opts(M.selective_scan_cpu, x, names, mask=mask), want, names)
    _assert_same(_run_opts(M.selective_scan_chunked, x, names, mask=mask), want, names)


@needs_kernel
@pytest.mark.parametrize("softplus", [True, False])
def test_kernel_fused_bias_and_softplus_match_pytorch(softplus):
    # delta in the range where softplus is log1p(exp(x)), around its threshold 20, and far below 0
    x = _inputs(40, n=12, seed=5)
    if softplus:
        x["delta"] = torch.linspace(-30, 30, 40).expand(2, 6, 40).contiguous()
        x["delta_bias"] = torch.tensor([-3.0, 0.0, 0.5, 2.0, -19.5, 1e-3])
        x["A"] = x["A"] * 0.01  # keep exp(delta A) away from 0 so every step's gradient matters
    else:  # the bias alone (positive step sizes, a stable scan)
        x["delta"] = torch.rand(2, 6, 40, generator=torch.Generator().manual_seed(4))
        x["delta_bias"] = torch.tensor([0.0, 0.5, 1e-3, 0.1, 0.2, 1.0])
    names = list(x)
    want = _run_opts(M.selective_scan_ref, x, names, delta_softplus=softplus)
    _assert_same(_run_opts(M.selective_scan_cpu, x, names, delta_softplus=softplus), want, names)


@needs_kernel
def test_kernel_softplus_is_accurate():
    x = torch.cat(
        [
            torch.linspace(-90, 90, 16 * 1024),
            torch.linspace(-1e-3, 1e-3, 16 * 64),
            torch.tensor([19.99, 20.0, 20.01, -20.0, 0.0, -0.0, 1e-30, -1e-30] * 2),
        ]
    )
    out = torch.empty_like(x)
    K._load().depdet_scan_softplus(x.data_ptr(), out.data_ptr(), x.numel())
    want = F.softplus(x.double())
    normal = want > 2e-38  # below, exp() is clamped at exp(-87.3) (no denormals): absolute error < 2e-38
    rel = ((out.double() - want) / want)[normal].abs()
    assert rel.max() < 1e-6, float(rel.max())
    assert (out.double() - want)[~normal].abs().max() < 2e-38
    assert torch.equal(out[x > 20], x[x > 20])  # PyTorch's threshold: identity above 20


@needs_kernel
@pytest.mark.parametrize("d", [8, 40, 75])
def test_kernel_reads_time_major_views_without_copies_and_writes_time_major(d):
    # u, delta, z as (B, D, L) views of (B, L, D) tensors: z strided like a chunk of in_proj's output;
    # d = 40: one tile of three 16-channel groups, the last partial; d = 75: a full tile of four
    # groups, then a tile of one partial group
    x = _inputs(29, b=3, d=d, n=12, seed=11)
    names = list(x)
    want = _run_opts(M.selective_scan_ref, x, names)
    tm = dict(x)
    for k in ("u", "delta"):
        tm[k] = x[k].transpose(1, 2).contiguous().transpose(1, 2)
    zz = torch.cat([x["u"].transpose(1, 2), x["z"].transpose(1, 2)], -1)  # (B, L, 2D)
    tm["z"] = zz[..., d:].transpose(1, 2)
    assert not tm["u"].is_contiguous() and tm["z"].stride() == (29 * 2 * d, 1, 2 * d)

    def leafs(t):  # a leaf with the same strides (clone() keeps them)
        return {k: v.detach().clone() for k, v in t.items()}

    lt = leafs(tm)
    assert lt["z"].stride(1) == 1 and lt["u"].stride(1) == 1
    got = _run_opts(M.selective_scan_cpu, lt, names, time_major_out=True)
    assert got[0].transpose(1, 2).is_contiguous()
    _assert_same(got, want, names)
    # the kernel's own row gathers read those strides: same bits as the contiguous call
    torch.testing.assert_close(got[0], _run_opts(M.selective_scan_cpu, x, names)[0], rtol=0, atol=0)


def test_causal_conv_reverse_is_the_conv_of_the_reversed_span():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 11, generator=g)
    w, b = torch.randn(5, 4, generator=g), torch.randn(5, generator=g)
    full = M.causal_conv1d(x, w, b, None, reverse=True)
    torch.testing.assert_close(full, M.causal_conv1d(x.flip(-1), w, b, None).flip(-1))
    lengths = torch.tensor([11, 6, 1])
    xz = x * (torch.arange(11)[None] < lengths[:, None])[:, None]  # rows past each span zeroed
    idx = M.flip_index(lengths, 11)
    want = M.flip_within(M.causal_conv1d(M.flip_within(xz, idx), w, b, "silu"), idx)
    got = M.causal_conv1d(xz, w, b, "silu", reverse=True)
    inside = (torch.arange(11)[None] < lengths[:, None])[:, None].expand_as(got)
    torch.testing.assert_close(got[inside], want[inside])


@pytest.mark.parametrize("backend", ["kernel", "chunked"])
@pytest.mark.parametrize("leaky", [False, True])
def test_bimamba_in_place_backward_branch_equals_the_gather_flip_formulation(monkeypatch, backend, leaky):
    """The Bi-Mamba block (no flipped copies) against the formulation it replaced: flip (or per-sample
    gather-flip) xi and z, run the backward branch causally on the flipped tensors, flip its output back."""
    if backend == "kernel" and not K.available():
        pytest.skip("CPU scan kernel not built")
    monkeypatch.setenv(K.ENV_BACKEND, backend)
    torch.manual_seed(0)
    blk = BM.BiMamba(16, d_state=12, expand=2, leaky_padding=leaky)
    x = torch.randn(3, 23, 16)
    mask = torch.arange(23)[None] < torch.tensor([23, 14, 5])[:, None]
    mask[0, 4] = False  # an invalid row inside a span
    x = x * mask[..., None]
    xg = x.clone().requires_grad_()
    got = blk(xg, mask)
    (got * torch.linspace(-1, 1, 16)).sum().backward()
    g_got = {n: p.grad.clone() for n, p in blk.named_parameters()}
    blk.zero_grad()

    xr = x.clone().requires_grad_()
    xi, z = blk.in_proj(xr).transpose(1, 2).chunk(2, dim=1)
    A, A_b = -torch.exp(blk.A_log.float()), -torch.exp(blk.A_b_log.float())
    if leaky:
        y_f = blk.fwd(xi, z, A, None, 64)
        y_b = blk.bwd(xi.flip(-1), z.flip(-1), A_b, None, 64).flip(-1)
        y = 0.5 * y_f + 0.5 * y_b
    else:
        mf = mask[:, None, :].float()
        xi = xi * mf
        y_f = blk.fwd(xi, z, A, mask, 64)
        idx = M.flip_index(seq_lengths(mask), 23)
        y_b = M.flip_within(
            blk.bwd(M.flip_within(xi, idx), M.flip_within(z, idx), A_b, torch.gather(mask, 1, idx), 64), idx
        )
        y = (0.5 * y_f + 0.5 * y_b) * mf
    want = blk.out_proj(y.transpose(1, 2))
    (want * torch.linspace(-1, 1, 16)).sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-4, atol=1e-5)
    for n, p in blk.named_parameters():
        torch.testing.assert_close(g_got[n], p.grad, rtol=1e-4, atol=1e-5, msg=lambda m, n=n: f"grad {n}: {m}")
