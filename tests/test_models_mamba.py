"""DepMamba, DynMultiDep and ASYM: shapes, padding invariance, masking, determinism, fitting."""

from __future__ import annotations

import pytest
import torch

from depdet.errors import ConfigError, DataError
from depdet.models import create_model
from depdet.models.dynmultidep import LocalWindowAttention, diff_softmax

torch.set_num_threads(1)

NAMES = ["depmamba", "dynmultidep", "asym"]
SMALL = dict(d_model=16, d_state=4, expand=2)
DIMS = [{"visual": 136, "audio": 25}, {"visual": 136, "audio": 128}, {"visual": 142, "audio": 25}]


def _batch(dims, lengths, L=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = L or max(lengths)
    inputs, masks = {}, {}
    for m, d in dims.items():
        mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
        inputs[m] = torch.randn(len(lengths), L, d, generator=g) * mask[..., None]
        masks[m] = mask
    return inputs, masks


def _pad(inputs, masks, k):
    return (
        {m: torch.cat([x, torch.zeros(x.shape[0], k, x.shape[2])], 1) for m, x in inputs.items()},
        {m: torch.cat([x, torch.zeros(x.shape[0], k, dtype=torch.bool)], 1) for m, x in masks.items()},
    )


def _model(name, dims, seed=0, **cfg):
    torch.manual_seed(seed)
    return create_model(name, dims, **{**SMALL, **cfg})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dims", DIMS, ids=["dvlog", "lmvd", "headpose"])
def test_forward_shapes_and_loss(name, dims):
    model = _model(name, dims)
    inputs, masks = _batch(dims, [9, 5, 7])
    out = model(inputs, masks)
    assert out.logits.shape == (3,) and torch.isfinite(out.logits).all()
    if name != "depmamba":
        assert out.modality_weights.shape == (3, 2)
        torch.testing.assert_close(out.modality_weights.sum(1), torch.ones(3))
    loss = model.loss(out, torch.tensor([1.0, 0.0, 1.0]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize("name", NAMES)
def test_padding_invariance_train_mode_batchnorm(name):
    # masked BatchNorm statistics: in train mode (dropout 0) padding changes neither outputs nor
    # running statistics
    dims = DIMS[0]
    inputs, masks = _batch(dims, [11, 6])
    a, b = _model(name, dims, dropout=0.0), _model(name, dims, dropout=0.0)
    out_a = a(inputs, masks).logits
    out_b = b(*_pad(inputs, masks, 30)).logits
    torch.testing.assert_close(out_b, out_a, rtol=1e-5, atol=1e-5)
    for (n, x), (_, y) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("name", NAMES)
def test_padding_invariance_eval(name):
    dims = DIMS[0]
    model = _model(name, dims).eval()
    inputs, masks = _batch(dims, [20, 13])
    with torch.no_grad():
        a = model(inputs, masks).logits
        b = model(*_pad(inputs, masks, 57)).logits
        alone = model({m: x[1:, :13] for m, x in inputs.items()}, {m: x[1:, :13] for m, x in masks.items()}).logits
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, a[1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_original_padding_switch_changes_outputs_only_with_padding(name):
    dims = DIMS[0]
    fixed = _model(name, dims).eval()
    leaky = _model(name, dims, padding="original").eval()
    leaky.load_state_dict(fixed.state_dict())
    inputs, masks = _batch(dims, [12, 12])
    with torch.no_grad():
        torch.testing.assert_close(leaky(inputs, masks).logits, fixed(inputs, masks).logits, rtol=1e-5, atol=1e-5)
        padded = _pad(inputs, masks, 20)
        assert not torch.allclose(leaky(*padded).logits, fixed(*padded).logits, atol=1e-4)
        torch.testing.assert_close(fixed(*padded).logits, fixed(inputs, masks).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_one_modality_masked_and_batch_of_one(name):
    dims = DIMS[0]
    model = _model(name, dims).eval()
    inputs, masks = _batch(dims, [10, 8])
    masks["audio"] = masks["audio"].clone()
    masks["audio"][0] = False
    inputs["audio"] = inputs["audio"] * masks["audio"][..., None]
    with torch.no_grad():
        out = model(inputs, masks)
        assert torch.isfinite(out.logits).all()
        if out.modality_weights is not None:  # an absent modality gets no weight
            assert out.modality_weights[0, 1] == 0
        one = model({m: x[:1] for m, x in inputs.items()}, {m: x[:1] for m, x in masks.items()})
        torch.testing.assert_close(one.logits, out.logits[:1], rtol=1e-5, atol=1e-5)
        empty = {m: torch.zeros_like(x[:1]) for m, x in masks.items()}
        assert torch.isfinite(model({m: x[:1] * 0 for m, x in inputs.items()}, empty).logits).all()
    model.train()
    out = model(inputs, masks)
    out.logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name):
    dims = DIMS[1]
    inputs, masks = _batch(dims, [6, 4])
    outs = []
    for _ in range(2):
        model = _model(name, dims, seed=123)
        torch.manual_seed(7)
        outs.append(model(inputs, masks).logits)  # train mode: dropout draws from the seeded RNG
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_depmamba_parameter_count_matches_reference():
    # Used parameters of the public DepMamba (D-Vlog dims, a_downsample excluded), analytically:
    #   projections 136*256 + 25*256                                               =    41,216
    #   CoSSM CNN per modality: conv 256*256*3 + BN 2*256 = 197,120; x2            =   394,240
    #   MMBiMamba (d_inner 1024, dt_rank 16, N 12), per modality:
    #     in_proj 256*2048 + 2*(conv 1024*4+1024) + 2*(x_proj 1024*40)
    #     + 2*(dt_proj 16*1024+1024) + D,D_b 2*1024 + out_proj 1024*256 = 915,456; x2 = 1,830,912
    #     shared A_log + A_b_log 2*1024*12                                         =    24,576
    #   LayerNorms 2*2*256                                                         =     1,024
    #   EnSSM CNN: conv 512*512*3 + BN 1,024                                       =   787,456
    #   BiMamba(512) (d_inner 2048, dt_rank 32): in_proj 512*4096 + 2*(2048*4+2048)
    #     + 2*(2048*56) + 2*(32*2048+2048) + A 2*2048*12 + D 2*2048 + out 2048*512 = 3,584,000
    #   LayerNorm 1,024 + head 513                                                 =     1,537
    #   total                                                                      = 6,664,961
    ref = 6_664_961
    model = create_model("depmamba", {"visual": 136, "audio": 25})
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 6.66e6) / 6.66e6 < 0.01
    assert n == ref
    lmvd = create_model("depmamba", {"visual": 136, "audio": 128}, d_state=16)
    assert abs(sum(p.numel() for p in lmvd.parameters()) - 6.78e6) / 6.78e6 < 0.01


def test_bad_padding_option_is_a_config_error():
    with pytest.raises(ConfigError, match="padding"):
        create_model("depmamba", DIMS[0], padding="zeros")
    with pytest.raises(ConfigError):
        create_model("asym", DIMS[0], not_an_option=1)


@pytest.mark.parametrize("name", NAMES)
def test_bad_batches_are_data_errors(name):
    model = _model(name, DIMS[0])
    inputs, masks = _batch(DIMS[0], [5, 4])
    with pytest.raises(DataError, match="audio"):
        model({"visual": inputs["visual"]}, masks)
    with pytest.raises(DataError, match="expected"):
        model({**inputs, "audio": inputs["audio"][..., :24]}, masks)
    with pytest.raises(DataError, match="mask"):
        model(inputs, {**masks, "audio": masks["audio"][:, :3]})
    with pytest.raises(ConfigError):
        _model(name, DIMS[0], d_model=18) if name != "depmamba" else _model(name, DIMS[0], padding="x")


def test_local_window_attention_respects_masks_and_window():
    torch.manual_seed(0)
    att = LocalWindowAttention(8, n_heads=2, window=2, dropout=0.0).eval()
    x = torch.randn(1, 12, 8)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 9:] = False
    y = att(x, mask)
    x2 = x.clone()
    x2[0, 9:] = 100.0  # masked keys: no effect on anything
    x2[0, 0] = -50.0  # outside the window of steps >= 3
    y2 = att(x2, mask)
    torch.testing.assert_close(y2[0, 3:9], y[0, 3:9])
    assert not torch.allclose(y2[0, :2], y[0, :2])


def test_diff_softmax_hard_is_one_hot_with_soft_gradient():
    logits = torch.tensor([[0.2, 1.5], [2.0, -1.0]], requires_grad=True)
    w = diff_softmax(logits, temp=1.0, hard=True)
    assert w.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    (w[:, 0] * torch.tensor([1.0, 2.0])).sum().backward()
    assert logits.grad.abs().sum() > 0
    soft = diff_softmax(logits.detach(), temp=2.0, hard=False)
    torch.testing.assert_close(soft, torch.softmax(logits.detach() / 2.0, -1))


def _planted(n=64, seed=0, dims=None):
    """Depressed samples get a shifted mean in a few channels of both modalities (variable lengths)."""
    g = torch.Generator().manual_seed(seed)
    dims = dims or {"visual": 136, "audio": 25}
    y = torch.arange(n) % 2
    lengths = torch.randint(8, 25, (n,), generator=g)
    L = int(lengths.max())
    mask = torch.arange(L)[None] < lengths[:, None]
    inputs = {}
    for m, d in dims.items():
        x = torch.randn(n, L, d, generator=g)
        x[:, :, :4] += (y[:, None, None].float() * 2 - 1) * 0.8
        inputs[m] = x * mask[..., None]
    return inputs, {m: mask for m in dims}, y.float()


@pytest.mark.parametrize("name", NAMES)
def test_fits_planted_signal(name):
    inputs, masks, y = _planted()
    model = _model(name, {"visual": 136, "audio": 25}, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        out = model(inputs, masks)
        model.loss(out, y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = ((model(inputs, masks).logits > 0).float() == y).float().mean().item()
    assert acc >= 0.95
