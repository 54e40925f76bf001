"""The compiled CPU selective-scan kernel (depdet.models.scan_kernel) against the sequential reference."""

from __future__ import annotations

import pytest
import torch

from depdet.models import mamba as M
from depdet.models import scan_kernel as K

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
    return dict(u=t(b, d, L), delta=t(b, d, L), A=-torch.rand(d, n, generator=g) * 3 - 0.1,
                B=t(b, n, L), C=t(b, n, L), D=t(d), z=t(b, d, L), delta_bias=t(d))


def _run(fn, x, names, **kw):
    args = {k: v.clone().requires_grad_() for k, v in x.items()}
    y, h = fn(args["u"], args["delta"], args["A"], args["B"], args["C"], args.get("D"), args.get("z"),
              args.get("delta_bias"), True, return_last_state=True, **kw)
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
        torch.testing.assert_close(g_k[name], g_ref[name], rtol=1e-4, atol=1e-4, msg=lambda m: f"grad {name}: {m}")


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
    y = M.selective_scan_cpu(args["u"], args["delta"], args["A"], args["B"], args["C"], args["D"], args["z"],
                             args["delta_bias"], True)
    y.sum().backward()
    assert torch.isfinite(y).all() and all(torch.isfinite(args[k].grad).all() for k in args)
    ref = M.selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"], x["delta_bias"], True)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("threads", [2, 3, 7])
def test_kernel_threads_split_channels_without_changing_results(threads):
    # more threads than one, uneven channel splits, and more threads than channels (d=5 < 7)
    x = _inputs(40, b=3, d=5, n=12, seed=7)
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
    _, h_five = M.selective_scan_cpu(x["u"][..., :5], delta[..., :5], x["A"], x["B"][..., :5], x["C"][..., :5],
                                     return_last_state=True)
    torch.testing.assert_close(h_full, h_five)
    y0, h0 = M.selective_scan_cpu(x["u"][..., :0], x["delta"][..., :0], x["A"], x["B"][..., :0], x["C"][..., :0],
                                  return_last_state=True)
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
    torch.testing.assert_close(y, M.selective_scan_ref(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"],
                                                       x["delta_bias"], True), rtol=1e-4, atol=1e-5)
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
    blocker.write_text("x")   # the cache path runs through a file: mkdir fails even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(K.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert K.available()
    assert K.library_path().startswith(str(tmp_path / "tmp"))
