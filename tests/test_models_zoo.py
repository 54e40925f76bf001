"""Model-zoo contract tests.

The generic tests loop over EVERY registered model (``list_models()``, so families added later are
covered too): any feature dims, variable lengths, batch size 1, a modality fully masked out for one
sample, padding invariance in eval mode, determinism under a seed. A model that errors fails the
test; nothing is skipped. Then model-specific tests: JAMFN's parameter count against an analytic
figure, masking details, MIMML's loss terms, the Depression Detector's reproduction switch, and a
planted-signal fit for each zoo model (small configs).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depdet.models import create_model, get_entry, list_models

torch.set_num_threads(1)

DIMS = [{"visual": 136, "audio": 25}, {"visual": 136, "audio": 128}, {"visual": 142, "audio": 25}]
DVLOG = DIMS[0]
ALL = list_models()
TORCH = [n for n in ALL if get_entry(n).kind == "torch"]
SKLEARN = [n for n in ALL if get_entry(n).kind == "sklearn"]


def _batch(dims, lengths, seed=0, L=None):
    """Random zero-padded batch with prefix masks of the given lengths."""
    g = torch.Generator().manual_seed(seed)
    L = L or max(lengths)
    inputs, masks = {}, {}
    for m, D in dims.items():
        x = torch.randn(len(lengths), L, D, generator=g)
        mk = torch.arange(L).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        inputs[m], masks[m] = x * mk.unsqueeze(-1), mk
    return inputs, masks


def _build(name, dims, seed=0):
    torch.manual_seed(seed)
    return create_model(name, dims)


def _check_output(out, B, L, M):
    assert out.logits.shape == (B,)
    assert torch.isfinite(out.logits).all()
    if out.temporal_weights is not None:
        assert out.temporal_weights.shape == (B, L)
        assert torch.isfinite(out.temporal_weights).all()
    if out.modality_weights is not None:
        assert out.modality_weights.shape == (B, M)
        assert torch.isfinite(out.modality_weights).all()


# ------------------------------------------------------------------------------ every torch model


@pytest.mark.parametrize("name", TORCH)
def test_contract_any_dims_lengths_batch1_and_masked_modality(name):
    for dims in DIMS:
        model = _build(name, dims).eval()
        M = len(dims)
        with torch.no_grad():
            # variable lengths (incl. very short ones)
            inputs, masks = _batch(dims, [23, 9, 2])
            out = model(inputs, masks)
            _check_output(out, 3, 23, M)
            if out.temporal_weights is not None:  # rows sum to 1 over valid steps, 0 on padding
                union = masks["visual"] | masks["audio"]
                torch.testing.assert_close(out.temporal_weights.sum(1), torch.ones(3), atol=1e-4, rtol=0)
                assert (out.temporal_weights[~union] == 0).all()
            # batch size 1
            inputs1, masks1 = _batch(dims, [11], seed=1)
            _check_output(model(inputs1, masks1), 1, 11, M)
            # one modality fully masked out for one sample (both directions)
            for gone in dims:
                inputs, masks = _batch(dims, [17, 12, 6], seed=2)
                masks[gone][1] = False
                inputs[gone][1] = 0.0
                out = model(inputs, masks)
                _check_output(out, 3, 17, M)
                if out.modality_weights is not None:
                    assert out.modality_weights[1, list(dims).index(gone)] == 0
        # train mode: batch size 1 and a masked-out modality give finite losses and gradients
        model.train()
        for lengths, gone in (([13], None), ([15, 10, 4], "audio"), ([15, 10, 4], "visual")):
            inputs, masks = _batch(dims, lengths, seed=3)
            if gone:
                masks[gone][0] = False
                inputs[gone][0] = 0.0
            out = model(inputs, masks)
            loss = model.loss(out, torch.tensor([1.0, 0.0, 1.0][: len(lengths)]))
            assert torch.isfinite(loss)
            model.zero_grad()
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", TORCH)
def test_padding_invariance_eval(name):
    """The same sample alone and padded inside a longer batch gives the same logit (atol 1e-5)."""
    model = _build(name, DVLOG).eval()
    x, mk = _batch(DVLOG, [19], seed=4)
    mk["visual"][0, 5] = False  # a missing face inside the sequence is not padding
    x["visual"][0, 5] = 0.0
    big, bigm = _batch(DVLOG, [19, 40, 7], seed=5, L=53)
    for m in DVLOG:
        big[m][0] = F.pad(x[m][0], (0, 0, 0, 53 - 19))
        bigm[m][0] = F.pad(mk[m][0], (0, 53 - 19))
    with torch.no_grad():
        alone = model(x, mk)
        batched = model(big, bigm)
    torch.testing.assert_close(batched.logits[0], alone.logits[0], atol=1e-5, rtol=0)
    if alone.temporal_weights is not None:
        torch.testing.assert_close(batched.temporal_weights[0, :19], alone.temporal_weights[0], atol=1e-5, rtol=0)
        assert (batched.temporal_weights[0, 19:] == 0).all()
    if alone.modality_weights is not None:
        torch.testing.assert_close(batched.modality_weights[0], alone.modality_weights[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TORCH)
def test_determinism_under_seed(name):
    inputs, masks = _batch(DVLOG, [14, 8], seed=6)
    outs = []
    for _ in range(2):
        model = _build(name, DVLOG, seed=123).eval()
        with torch.no_grad():
            outs.append(model(inputs, masks).logits)
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    other = _build(name, DVLOG, seed=124).eval()
    with torch.no_grad():
        assert not torch.equal(other(inputs, masks).logits, outs[0])


# ------------------------------------------------------------------------------ every sklearn model


def _np_samples(dims, n, seed, signal=0.0, labels=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n) if labels is None else labels
    feats = []
    for y in labels:
        T = int(rng.integers(5, 30))
        f = {m: rng.normal(size=(T, D)).astype(np.float32) for m, D in dims.items()}
        for m in f:
            f[m][:, :4] += signal * y
        feats.append(f)
    return feats, np.asarray(labels)


@pytest.mark.parametrize("name", SKLEARN)
def test_sklearn_contract(name):
    for dims in DIMS:
        labels = np.array([0, 1] * 16)
        feats, y = _np_samples(dims, 32, seed=7, labels=labels)
        feats[3]["audio"][:] = 0.0  # a modality with no valid row (all-zero rows = missing)
        model = create_model(name, dims)
        model.fit(feats, y)
        p = model.predict_proba(feats)
        assert p.shape == (32,) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
        clone = create_model(name, dims)
        clone.load_state_dict(pickle.loads(pickle.dumps(model.state_dict())))
        np.testing.assert_array_equal(clone.predict_proba(feats), p)
    again = create_model(name, dims).fit(feats, y)
    np.testing.assert_array_equal(again.predict_proba(feats), p)  # deterministic (seeded)


def test_sklearn_errors():
    from depdet.errors import ConfigError, DataError

    model = create_model("lr", DVLOG)
    feats, y = _np_samples(DVLOG, 10, seed=8, labels=np.array([0, 1] * 5))
    with pytest.raises(ConfigError, match="not fitted"):
        model.predict_proba(feats)
    with pytest.raises(DataError, match="both classes"):
        model.fit(feats, np.zeros(10))
    with pytest.raises(DataError, match="expected"):
        model.fit([{"visual": np.zeros((3, 5)), "audio": np.zeros((3, 25))}] * 2, [0, 1])
    with pytest.raises(ConfigError, match="another classifier"):
        create_model("rf", DVLOG).load_state_dict(model.fit(feats, y).state_dict())


def test_pooled_statistics_use_valid_rows_only():
    from depdet.models.classic import pooled_statistics

    v = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 6.0]])
    a = np.zeros((3, 1))
    masks = {"visual": np.array([True, False, True]), "audio": np.zeros(3, bool)}
    s = pooled_statistics({"visual": v, "audio": a}, {"visual": 2, "audio": 1}, masks=masks)
    np.testing.assert_allclose(s[:9], [2, 4, 1, 2, 1, 2, 3, 6, 1])  # mean, std, min, max, present
    np.testing.assert_allclose(s[9:], [0, 0, 0, 0, 0])  # no valid audio row -> zeros, flag 0
    s0 = pooled_statistics({"visual": v, "audio": a}, {"visual": 2, "audio": 1})  # no masks: every row counts
    np.testing.assert_allclose(s0[:2], [4 / 3, 8 / 3])
    s2 = pooled_statistics(
        {"visual": v, "audio": a}, {"visual": 2, "audio": 1}, masks={"visual": np.array([True, True, False])}
    )
    np.testing.assert_allclose(s2[:2], [0.5, 1.0])


# ------------------------------------------------------------------------------ JAMFN


def test_jamfn_parameter_count_dvlog():
    """Analytic count for D-Vlog dims (visual 136, audio 25), H=200, 6 layers, C=512, k=1/3/5, L=596.

    BiLSTM, per direction (PyTorch LSTM: 4 gates, W_ih, W_hh, two bias vectors):
        layer 1: 4H(D + H) + 8H;  layers 2..6 see the concatenated directions (2H): 4H(2H + H) + 8H
        = 4*200*600 + 1600 = 481,600 each.
        visual: 2 * (4*200*(136+200) + 1600 + 5*481,600) = 2 * (270,400 + 2,408,000) = 5,356,800
        audio:  2 * (4*200*(25+200)  + 1600 + 5*481,600) = 2 * (181,600 + 2,408,000) = 5,179,200
    Convs (input 200 = summed directions, 512 out), per modality:
        k1: 200*512*1 + 512 = 102,912; k3: 307,712; k5: 512,512 -> 923,136; x2 = 1,846,272
    JAF per scale: two score FCs 512->1 (2*513 = 1,026) + FC_3 over 2L = 1192: 1192^2 + 1192 = 1,422,056
        -> 1,423,082 per scale; x3 = 4,269,246
    Head, Eq. 14 (default: FC over the flattened L x H = 596*512 = 305,152 fused features, 2 classes):
        (305,152 + 1) * 2 = 610,306;  depdet's attend_sum + bce reading: 512 -> 1: 513
    Total (default): 5,356,800 + 5,179,200 + 1,846,272 + 4,269,246 + 610,306 = 17,261,824
    (attend_sum + bce: 16,652,031, the count before the Eq. 12 default.)
    """
    from depdet.models.jamfn import jamfn_param_breakdown, jamfn_param_count

    expected = 5_356_800 + 5_179_200 + 1_846_272 + 4_269_246 + 610_306
    assert expected == 17_261_824
    assert jamfn_param_count(DVLOG) == expected
    assert jamfn_param_breakdown(DVLOG)["head"] == 610_306
    assert jamfn_param_count(DVLOG, fusion="attend_sum", head="bce") == 16_652_031
    with torch.device("meta"):
        model = create_model("jamfn", DVLOG)
        reading = create_model("jamfn", DVLOG, fusion="attend_sum", head="bce")
    assert sum(p.numel() for p in model.parameters()) == expected
    assert sum(p.numel() for p in reading.parameters()) == 16_652_031
    # the formula also matches other configurations
    for cfg in (
        dict(hidden=8, lstm_layers=2, channels=6, kernels=(1, 3), max_len=20, jaf="pointwise", fusion="attend_sum"),
        dict(hidden=8, lstm_layers=2, channels=6, kernels=(1, 3), max_len=20, head="bce"),
    ):
        small = create_model("jamfn", DIMS[1], **cfg)
        assert sum(p.numel() for p in small.parameters()) == jamfn_param_count(DIMS[1], **cfg)


def test_jamfn_truncates_to_max_len_and_pointwise_does_not():
    dims = DVLOG
    inputs, masks = _batch(dims, [30, 12], seed=9)
    torch.manual_seed(0)
    fixed = create_model("jamfn", dims, hidden=8, lstm_layers=2, channels=8, max_len=20).eval()
    with torch.no_grad():
        out = fixed(inputs, masks)
        cut = fixed({m: x[:, :20] for m, x in inputs.items()}, {m: k[:, :20] for m, k in masks.items()})
    assert out.temporal_weights.shape == (2, 30)
    assert (out.temporal_weights[:, 20:] == 0).all()  # rows past max_len are dropped (D-Vlog truncation)
    torch.testing.assert_close(out.logits, cut.logits)
    torch.manual_seed(0)
    # depdet's length-independent reading (pointwise FC_3 + attend_sum; the Eq. 12 head needs a fixed L)
    pw = create_model("jamfn", dims, hidden=8, lstm_layers=2, channels=8, jaf="pointwise", fusion="attend_sum").eval()
    with torch.no_grad():
        out = pw(inputs, masks)
    assert (out.temporal_weights[0, 20:30] > 0).all()


def test_jamfn_padded_scores_never_reach_the_joint_fc():
    """Changing the content of padded rows (which a careless implementation would score) has no effect."""
    torch.manual_seed(0)
    model = create_model("jamfn", DVLOG, hidden=8, lstm_layers=2, channels=8, max_len=40).eval()
    inputs, masks = _batch(DVLOG, [25, 10], seed=10)
    noisy = {m: torch.where(masks[m].unsqueeze(-1), x, torch.randn_like(x) * 5) for m, x in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(noisy, masks).logits, model(inputs, masks).logits)


# ------------------------------------------------------------------------------ MIMML


def test_mimml_loss_terms_and_text_branch():
    dims = {"visual": 136, "audio": 25, "text": 16}
    inputs, masks = _batch(dims, [12, 9, 7, 5], seed=11)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    torch.manual_seed(0)
    # depdet's earlier reading (fusion="late"): gated encoders per modality, attention over modalities
    late = create_model("mimml", dims, hidden=8, proj_dim=8, fusion="late")
    out = late(inputs, masks)
    assert out.aux["aux_logits"].shape == (4, 3) and out.aux["gates"].shape == (4, 3)
    assert ((out.aux["gates"] > 0) & (out.aux["gates"] < 1)).all()
    torch.testing.assert_close(out.modality_weights.sum(1), torch.ones(4))
    # the default (abstract: the gated BiGRU + CNN structure performs the multimodal fusion): one gated
    # structure over the joint sequences, input width M * 2H
    model = create_model("mimml", dims, hidden=8, proj_dim=8)
    assert model.fuse.gru.input_size == 3 * 16 and not hasattr(model, "encoders")
    out = model(inputs, masks)
    assert out.aux["aux_logits"].shape == (4, 3) and out.aux["gates"].shape == (4, 1)
    assert ((out.aux["gates"] > 0) & (out.aux["gates"] < 1)).all()
    bce = F.binary_cross_entropy_with_logits(out.logits, labels)
    aux = sum(F.binary_cross_entropy_with_logits(out.aux["aux_logits"][:, i], labels) for i in range(3))
    nce = model.info_nce(out.aux["proj"], out.aux["present"])
    assert nce > 0
    torch.testing.assert_close(model.loss(out, labels), bce + 0.3 * aux + 0.1 * nce)
    model.lambda_aux = model.lambda_mi = 0.0
    torch.testing.assert_close(model.loss(out, labels), bce)


def test_mimml_infonce_prefers_matching_pairs():
    torch.manual_seed(0)
    model = create_model("mimml", DVLOG, hidden=8, proj_dim=4, temperature=0.1)
    z = F.normalize(torch.randn(6, 1, 4), dim=-1)
    present = torch.ones(6, 2, dtype=torch.bool)
    aligned = model.info_nce(torch.cat([z, z], 1), present)
    shuffled = model.info_nce(torch.cat([z, z[torch.tensor([1, 2, 3, 4, 5, 0])]], 1), present)
    assert aligned < shuffled
    present[:5, 1] = False  # fewer than 2 complete samples: no MI term
    assert model.info_nce(torch.cat([z, z], 1), present) == 0


# ------------------------------------------------------------------------------ Detector / TAMFN / helpers


def test_detector_defaults_follow_allenyolk_34d94ab():
    """models.md §2.4(a): k16 s4 downsampling, 6 layers, d 256 / 4 heads / ff 256, joint 512/ff 512.
    (Another version of the public file uses stride 8 and 3 layers: both are options.)"""
    with torch.device("meta"):
        m = create_model("detector", DVLOG)
    conv = m.down["visual"].conv
    assert (conv.kernel_size, conv.stride, conv.padding, conv.out_channels) == ((16,), (4,), (8,), 256)
    assert len(m.enc["audio"].layers) == 6 and len(m.joint.layers) == 6
    layer = m.enc["audio"].layers[0]
    assert layer.self_attn.num_heads == 4 and layer.linear1.out_features == 256
    assert m.joint.layers[0].linear1.out_features == 512 and m.fc.in_features == 512
    assert m.drop.p == 0.5


@pytest.mark.parametrize(
    "name,cfg", [("detector", dict(d=32, heads=2, num_layers=1, ff=32)), ("tamfn", dict(d=16, num_layers=1))]
)
def test_public_unmasked_behaviour_is_not_padding_invariant_ours_is(name, cfg):
    """The public code (AllenYolk) has no masks; use_masks=False reproduces that, and padding then
    changes the output; the default (masked) model does not change."""
    x, mk = _batch(DVLOG, [21], seed=12)
    big = {m: F.pad(v, (0, 0, 0, 30)) for m, v in x.items()}
    bigm = {m: F.pad(v, (0, 30)) for m, v in mk.items()}
    for use_masks in (True, False):
        torch.manual_seed(0)
        m = create_model(name, DVLOG, use_masks=use_masks, **cfg).eval()
        with torch.no_grad():
            diff = (m(x, mk).logits - m(big, bigm).logits).abs().item()
        assert (diff < 1e-5) == use_masks


def test_downsample_mask_matches_conv_and_lengths():
    from depdet.models.layers import downsample_mask

    mask = torch.zeros(3, 50, dtype=torch.bool)
    mask[0, :50] = True
    mask[1, :13] = True
    mask[2, 20:24] = True  # valid rows only in the middle
    out = downsample_mask(mask, 16, 4, 8)
    conv = torch.nn.Conv1d(1, 1, 16, stride=4, padding=8)
    assert out.shape[1] == conv(torch.zeros(1, 1, 50)).shape[-1]
    assert out[0].all()
    assert out[1].sum() == (13 + 16 - 16) // 4 + 1  # the length the sample has on its own
    assert not out[1, 13 // 4 + 1 :].any()
    # output j sees input rows 4j-8 .. 4j+7: rows 20..23 are touched by j = 4..7, but run alone (24 rows)
    # the conv has only (24 + 16 - 16) // 4 + 1 = 7 outputs, so j = 7 exists only in a padded batch
    assert out[2].nonzero().flatten().tolist() == [4, 5, 6]
    assert not downsample_mask(torch.zeros(1, 9, dtype=torch.bool), 16, 4, 8).any()


def test_masked_batchnorm_equals_batchnorm_when_all_valid_and_ignores_padding():
    from depdet.models.layers import MaskedBatchNorm1d as _BN

    def MaskedBatchNorm1d(c):  # noqa: N802 - the Depression Detector's variant
        return _BN(c, min_valid_steps=1)

    torch.manual_seed(0)
    x = torch.randn(4, 6, 10)
    ref, ours = torch.nn.BatchNorm1d(6), MaskedBatchNorm1d(6)
    ours.load_state_dict(ref.state_dict())
    torch.testing.assert_close(ours(x, torch.ones(4, 10, dtype=torch.bool)), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:, :5] = True
    a = MaskedBatchNorm1d(6)(x, mask)[..., :5]
    b = MaskedBatchNorm1d(6)(x[..., :5].contiguous(), mask[:, :5])
    torch.testing.assert_close(a, b)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x, mask), ref(x))


def test_tamfn_exposes_time_aware_weights():
    torch.manual_seed(0)
    m = create_model("tamfn", DVLOG, d=16, num_layers=1).eval()
    inputs, masks = _batch(DVLOG, [30, 9], seed=13)
    with torch.no_grad():
        out = m(inputs, masks)
    w = out.aux["tamf_weights"]
    assert set(w) == {"av", "af", "fv"} and w["av"].shape == (2, 30 // 4 + 1, 2)
    assert (w["av"][1, 9 // 4 + 1 :] == 0).all()  # zero past the sample's downsampled length


def test_rnn_pool_last_uses_last_valid_row():
    from depdet.models.fusion import RNNEncoder

    torch.manual_seed(0)
    enc = RNNEncoder(5, 4, pool="last").eval()
    x = torch.randn(1, 7, 5)
    mask = torch.ones(1, 7, dtype=torch.bool)
    padded = F.pad(x, (0, 0, 0, 3))
    pmask = F.pad(mask, (0, 3))
    with torch.no_grad():
        full = enc.rnn(x)[0]
        torch.testing.assert_close(enc(padded, pmask), torch.cat([full[:, -1, :4], full[:, 0, 4:]], -1))


# ------------------------------------------------------------------------------ planted signal


SMALL = {
    "jamfn": dict(hidden=16, lstm_layers=2, channels=16, max_len=32),
    "mimml": dict(hidden=16, proj_dim=16, dropout=0.0),
    "detector": dict(d=32, heads=2, num_layers=1, ff=32, dropout=0.0, head_dropout=0.1),
    "tamfn": dict(d=32, num_layers=1, head_dropout=0.1),
    "bilstm_audio": dict(hidden=16, num_layers=1, dropout=0.0),
    "bilstm_visual": dict(hidden=16, num_layers=1, dropout=0.0),
    "fusion_concat": dict(hidden=16, d=16, dropout=0.0),
    "fusion_add": dict(hidden=16, d=16, dropout=0.0),
    "fusion_mul": dict(hidden=16, d=16, dropout=0.0),
    "tfn": dict(hidden=16, d=8, post_hidden=16, dropout=0.0),
}


def _planted(n=64, seed=0):
    """64 samples, lengths 8..24; label 1 shifts the first 4 columns of every modality by +1."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0.0, 1.0] * (n // 2))
    lengths = torch.randint(8, 25, (n,), generator=g).tolist()
    inputs, masks = _batch(DVLOG, lengths, seed=seed + 1)
    for m in inputs:
        inputs[m][..., :4] += labels.view(-1, 1, 1) * masks[m].unsqueeze(-1)
    return inputs, masks, labels


def _train_accuracy(name, epochs=60, lr=3e-3):
    torch.manual_seed(0)
    model = create_model(name, DVLOG, **SMALL[name])
    inputs, masks, labels = _planted()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    perm_g = torch.Generator().manual_seed(0)
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(64, generator=perm_g).split(16):
            out = model({m: x[idx] for m, x in inputs.items()}, {m: k[idx] for m, k in masks.items()})
            loss = model.loss(out, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 5 == 4:
            model.eval()
            with torch.no_grad():
                acc = ((model(inputs, masks).logits > 0).float() == labels).float().mean().item()
            if acc >= 0.95:
                break
    return acc


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fits_planted_signal(name):
    assert _train_accuracy(name) >= 0.95


@pytest.mark.parametrize("name", ["lr", "svm", "rf"])
def test_classic_fits_planted_signal(name):
    feats, y = _np_samples(DVLOG, 64, seed=14, signal=1.0, labels=np.array([0, 1] * 32))
    model = create_model(name, DVLOG).fit(feats, y)
    assert ((model.predict_proba(feats) > 0.5) == y).mean() >= 0.95
