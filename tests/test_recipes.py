"""Issue 12: paper presets reproduce the papers' public code (or text), depdet's variants are separate;
padding="original" equals a hand-built public-code forward; JAMFN's default follows Eq. 12; run folders
record what was run and `depdet train --config` re-runs a run to the same metrics."""

from __future__ import annotations

import copy
import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

from depdet.models import create_model
from depdet.pipeline.data.batching import collate
from depdet.pipeline.training.config import TrainConfig, resolve_preset
from depdet.pipeline.training.presets import PRESETS, get_preset, list_presets

RAW = {
    "landmark_zscore": False,
    "standardize": False,
    "max_len": None,
    "crop_aug": False,
    "crop_min_len": 500,
    "crop_attempts": 5,
}


# ------------------------------------------------------------------------------ presets


def test_depmamba_paper_presets_resolve_to_the_values_their_notes_cite():
    for name, d_state, crop in (("depmamba-dvlog", 12, 500), ("depmamba-lmvd", 16, 400)):
        r = resolve_preset(name)
        # models.md §1.3/§2.1/§3: loaders only cast to float32; padding leak; lr 1e-4 (README runs), batch 16,
        # 120 epochs, no scheduler, no weight decay, strictly-better mean(acc,P,R,F1), crops >= 500/400
        assert r["kind"] == "paper" and r["model"] == "depmamba"
        assert r["model_config"]["padding"] == "original" and r["model_config"]["d_state"] == d_state
        assert (r["model_config"]["expand"], r["model_config"]["d_conv"], r["model_config"]["dropout"]) == (4, 4, 0.1)
        assert r["preprocess"] == {**RAW, "crop_aug": True, "crop_min_len": crop}
        assert (
            r["optimizer"],
            r["lr"],
            r["weight_decay"],
            r["batch_size"],
            r["epochs"],
            r["scheduler"],
            r["patience"],
            r["select"],
            r["amp"],
            r["grad_clip"],
        ) == ("adam", 1e-4, 0.0, 16, 120, "none", None, "depmamba", False, None)
        note = r["note"]
        for cited in (
            "lr 1e-4",
            "batch 16",
            "120 epochs",
            "no scheduler",
            "float32",
            "padding='original'",
            f"d_state {d_state}",
            f">= {crop}",
            "no standardisation",
            "strictly better",
            "seeds 1, 2, 3",
        ):
            assert cited in note, (name, cited)
        assert (r["fps"], r["dataset"], r["preset_fps"], r["preset_dataset"]) == (
            1.0,
            name.split("-")[1],
            1.0,
            name.split("-")[1],
        )


def test_training_modules_import_one_way_presets_at_the_bottom():
    """presets.py imports nothing from the training package (not even inside a function), and no
    training module imports one that imports it back: config -> presets, runs -> loop/kfold/config,
    rerun -> runs (issue 23: the presets <-> train circle)."""
    import ast
    from pathlib import Path

    import depdet.pipeline.training as training

    pkg = Path(training.__file__).parent
    graph = {}
    for path in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                if mod == "depdet.pipeline.training":
                    deps |= {a.name for a in node.names}
                elif mod.startswith("depdet.pipeline.training."):
                    deps.add(mod.rsplit(".", 1)[1])
        graph[path.stem] = deps - {path.stem}
    assert graph["presets"] == set()
    assert "presets" in graph["config"] and "train" not in graph  # train.py is split, not kept as a shim

    def reaches(a, b, seen=()):
        return b in graph.get(a, ()) or any(reaches(c, b, (*seen, a)) for c in graph.get(a, ()) if c not in seen)

    circles = sorted((a, b) for a in graph for b in graph[a] if reaches(b, a))
    assert circles == []


def test_jamfn_dvlog_is_the_papers_section_4_2_recipe():
    r = resolve_preset("jamfn-dvlog")
    # Zhou et al. 2023 §4.2: Adam, batch 32, 30 epochs, lr 1e-4, weight decay 5e-4, eps 1e-8, patience 4; CE loss
    assert (r["optimizer"], r["batch_size"], r["epochs"], r["lr"], r["weight_decay"], r["patience"]) == (
        "adam",
        32,
        30,
        1e-4,
        5e-4,
        4,
    )
    assert torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults["eps"] == 1e-8  # the eps the note cites
    mc = r["model_config"]
    assert (mc["fusion"], mc["head"], mc["hidden"], mc["lstm_layers"], mc["channels"], list(mc["kernels"])) == (
        "elementwise",
        "ce2",
        200,
        6,
        512,
        [1, 3, 5],
    )
    assert r["preprocess"] == RAW and r["amp"] is False
    for cited in (
        "batch 32, 30 epochs, lr 1e-4, weight decay 5e-4",
        "eps 1e-8",
        "patience 4",
        "cross-entropy",
        "weighted P/R/F1",
        "select='loss', depdet's choice",
    ):
        assert cited in r["note"], cited
    assert "not public" not in r["note"] and "Borrowed" not in r["note"]


def test_every_paper_preset_loads_features_as_the_public_loaders_and_trains_in_float32():
    papers = [n for n in list_presets() if PRESETS[n]["kind"] == "paper"]
    assert {"depmamba-dvlog", "depmamba-lmvd", "jamfn-dvlog", "detector-dvlog", "tamfn-dvlog"} <= set(papers)
    for n in papers:
        c = TrainConfig.from_preset(n)
        assert c.amp is False, n
        assert c.preprocess["standardize"] is False and c.preprocess["landmark_zscore"] is False, n
        assert PRESETS[n]["sources"] and "Remaining differences" in PRESETS[n]["note"], n
        if "padding" in c.model_config:
            assert c.model_config["padding"] == "original", n
        if "use_masks" in c.model_config:
            assert c.model_config["use_masks"] is False, n


def test_fixed_presets_differ_from_their_paper_preset_exactly_in_the_listed_changes():
    fixed = [n for n in list_presets() if n.endswith("-fixed")]
    assert {"depmamba-dvlog-fixed", "depmamba-lmvd-fixed"} <= set(fixed)
    for n in fixed:
        p, base = get_preset(n), get_preset(get_preset(n)["variant_of"])
        assert p["kind"] == "depdet" and n == p["variant_of"] + "-fixed"
        a, b = TrainConfig.from_preset(n).to_dict(), TrainConfig.from_preset(p["variant_of"]).to_dict()
        diff = {k for k in a if a[k] != b[k]}
        assert diff == {"model_config", "preprocess", "amp", "preset", "bucketing", "max_tokens"}, n
        assert (a["bucketing"], b["bucketing"], b["max_tokens"]) == (True, False, 0), n
        assert {k for k in a["preprocess"] if a["preprocess"][k] != b["preprocess"][k]} == {
            "standardize",
            "landmark_zscore",
        }
        assert {k for k in a["model_config"] if a["model_config"][k] != b["model_config"][k]} == {"padding"}
        assert a["model_config"]["padding"] == "fixed" and a["amp"] is True
        text = " ".join(p["changes"])
        for word in (
            "padding='fixed'",
            "standardize=True",
            "landmark_zscore=True",
            "amp=True",
            "bucketing=True",
            "max_tokens=",
        ):
            assert word in text
        assert base["note"] in p["note"]


def test_cli_presets_list_and_resolved_json(capsys):
    code, out, err = run_cli(["presets"], capsys)
    assert code == 0, err
    for n in ("depmamba-dvlog", "depmamba-dvlog-fixed", "jamfn-dvlog"):
        assert n in out
    code, out, err = run_cli(["presets", "jamfn-dvlog", "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    fields = set(TrainConfig.__dataclass_fields__)
    assert fields <= set(r)  # the TrainConfig field names as keys
    assert r["preprocess"] == RAW and r["model_config"]["fusion"] == "elementwise"
    assert r["note"] == PRESETS["jamfn-dvlog"]["note"] and r["fps"] == 1.0 and r["dataset"] == "dvlog"
    code, out, err = run_cli(["presets", "depmamba-dvlog-fixed"], capsys)
    assert code == 0, err
    assert "variant of depmamba-dvlog" in out and "standardize=True" in out
    code, out, err = run_cli(["presets", "nope"], capsys)
    assert code == 1 and "unknown preset" in err


def test_cli_model_card_lists_options_and_jamfn_parameter_breakdown(capsys):
    code, out, err = run_cli(["models", "jamfn"], capsys)
    assert code == 0, err
    assert "Eq. 12" in out and "depdet's" in out
    for opt in ("fusion", "head", "jaf", "max_len", "conv_act"):
        assert opt in out
    assert "17,261,824" in out and "head: 610,306" in out and "jaf_fc3: 4,266,168" in out
    code, out, err = run_cli(
        ["models", "jamfn", "--json", "--model-opt", 'fusion="attend_sum"', "--model-opt", 'head="bce"'], capsys
    )
    assert code == 0, err
    card = json.loads(out)
    assert card["parameters"] == 16_652_031 and card["parameter_breakdown"]["head"] == 513
    opts = {o["name"]: o for o in card["options"]}
    assert opts["fusion"]["default"] == "elementwise" and "Eq. 12" in opts["fusion"]["meaning"]
    code, out, err = run_cli(["models", "depmamba"], capsys)
    assert code == 0, err
    assert "padding" in out and "original" in out and "public code" in out


# ------------------------------------------------------------------------------ DepMamba padding="original"


def _scan(u, delta, A, Bm, Cm, D, z):
    """The selective-scan recurrence written out: h_t = exp(dt A) h_{t-1} + dt B_t u_t, y_t = C_t h_t + D u_t."""
    Bsz, Dn, L = u.shape
    h = torch.zeros(Bsz, Dn, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(L):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * Bm[:, None, :, t] * u[:, :, t, None]
        ys.append((h * Cm[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1) + u * D[None, :, None]
    return y * F.silu(z)


def _branch(br, x, z, A):
    """One scan direction as the public code runs it (causal conv + SiLU, x_proj, dt_proj + softplus)."""
    L, k = x.shape[-1], br.conv1d.weight.shape[-1]
    xc = F.silu(F.conv1d(x, br.conv1d.weight, br.conv1d.bias, padding=k - 1, groups=x.shape[1])[..., :L])
    dbl = br.x_proj(xc.transpose(1, 2))
    dt, Bm, Cm = torch.split(dbl, [br.dt_rank, br.d_state, br.d_state], dim=-1)
    delta = F.softplus(dt @ br.dt_proj.weight.T + br.dt_proj.bias).transpose(1, 2)
    return _scan(xc, delta, A, Bm.transpose(1, 2), Cm.transpose(1, 2), br.D, z)


def _bimamba_v2(in_proj, fwd, bwd, A_log, A_b_log, out_proj, x):
    """Vim bimamba v2 on the padded tensor: backward scan over ``xz.flip(-1)``, 0.5/0.5, out_proj."""
    xi, z = in_proj(x).transpose(1, 2).chunk(2, dim=1)
    y_f = _branch(fwd, xi, z, -torch.exp(A_log))
    y_b = _branch(bwd, xi.flip(-1), z.flip(-1), -torch.exp(A_b_log)).flip(-1)
    return out_proj((0.5 * y_f + 0.5 * y_b).transpose(1, 2))


def _cnn(block, x, training):
    """MMCNNEncoderLayer: Conv1d(k3, no bias) -> plain BatchNorm over every position -> ReLU (+ identity)."""
    xt = x.transpose(1, 2)
    bn = block.bn
    y = F.batch_norm(
        block.conv(xt),
        bn.running_mean.clone(),
        bn.running_var.clone(),
        bn.weight,
        bn.bias,
        training,
        bn.momentum,
        bn.eps,
    )
    return (F.relu(y) + xt).transpose(1, 2)


def _public_depmamba(model, x_cat, dv, training):
    """Jiaxin-Ye/DepMamba@6e96fd2 DepMamba.forward (models.md §2.1), written from the description, on the
    concatenated padded input ``x_cat`` (visual first) with the loader's mask ``x_cat.sum(-1) != 0``."""
    xs = [x_cat[..., :dv], x_cat[..., dv:]]
    hs = []
    for i, m in enumerate(model.modalities):
        h = model.proj[m](xs[i].transpose(1, 2)).transpose(1, 2)
        hs.append(_cnn(model.co_cnn[m], h, training))
    cm = model.co_mamba
    outs = [
        _bimamba_v2(cm.in_proj[i], cm.fwd[i], cm.bwd[i], cm.A_log, cm.A_b_log, cm.out_proj[i], h)
        for i, h in enumerate(hs)
    ]
    hs = [h + model.co_norm[m](o) for m, h, o in zip(model.modalities, hs, outs)]
    h = _cnn(model.en_cnn, torch.cat(hs, -1), training)
    em = model.en_mamba.mamba
    h = h + model.en_mamba.norm(_bimamba_v2(em.in_proj, em.fwd, em.bwd, em.A_log, em.A_b_log, em.out_proj, h))
    mask = (x_cat.sum(-1) != 0).to(h.dtype).unsqueeze(-1)
    return model.head((h * mask).sum(1) / mask.sum(1)).squeeze(-1)


def _noface_batch(dims, lengths, seed):
    rng = np.random.default_rng(seed)
    samples, valid = [], []
    for b, T in enumerate(lengths):
        v = rng.normal(size=(T, dims["visual"])).astype(np.float32)
        a = rng.normal(size=(T, dims["audio"])).astype(np.float32)
        face = np.ones(T, bool)
        face[[1, 2] if b == 0 else [T - 2]] = False  # no-face rows (the loader's files hold zeros there)
        v[~face] = 0.0
        samples.append({"visual": v, "audio": a})
        valid.append({"visual": face, "audio": np.ones(T, bool)})
    return samples, valid


@pytest.mark.parametrize("training", [False, True])
def test_depmamba_original_matches_a_hand_built_public_forward_on_a_padded_batch_with_no_face_rows(training):
    dims = {"visual": 6, "audio": 3}
    torch.manual_seed(0)
    model = create_model("depmamba", dims, d_model=8, d_state=4, expand=2, dropout=0.0, padding="original")
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for bn in (model.co_cnn["visual"].bn, model.co_cnn["audio"].bn, model.en_cnn.bn):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    model.train(training)
    samples, valid = _noface_batch(dims, [11, 7, 4], seed=3)
    inputs, masks = collate(samples, valid)
    assert not masks["visual"][0, 1] and not masks["audio"][2, 5]  # a no-face row; a padded row
    ref_model = copy.deepcopy(model)
    with torch.no_grad():
        got = model(inputs, masks).logits
        want = _public_depmamba(ref_model, torch.cat([inputs["visual"], inputs["audio"]], -1), dims["visual"], training)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)  # float32 (the model computes in float32)
    # the padding leak is real: the same sample alone gives another logit (as in the public code)
    inp1, mk1 = collate(samples[2:], valid[2:])
    with torch.no_grad():
        alone = model(inp1, mk1).logits
    if not training:
        assert abs(float(alone[0] - got[2])) > 1e-6


def test_fixed_differs_from_original_only_where_it_masks_rows():
    """On one unpadded clip: equal without no-face rows, different with them (documented in the card)."""
    dims = {"visual": 6, "audio": 3}
    torch.manual_seed(1)
    orig = create_model("depmamba", dims, d_model=8, d_state=4, expand=2, padding="original").eval()
    fixed = create_model("depmamba", dims, d_model=8, d_state=4, expand=2, padding="fixed").eval()
    fixed.load_state_dict(orig.state_dict())
    samples, valid = _noface_batch(dims, [9], seed=5)
    full = [{"visual": np.ones(9, bool), "audio": np.ones(9, bool)}]
    clean = [{"visual": np.random.default_rng(6).normal(size=(9, 6)).astype(np.float32), "audio": samples[0]["audio"]}]

    def logit(model, smp, val):
        inp, mk = collate(smp, val)
        with torch.no_grad():
            return float(model(inp, mk).logits[0])

    assert logit(orig, clean, full) == pytest.approx(logit(fixed, clean, full), abs=1e-6)
    assert abs(logit(orig, samples, valid) - logit(fixed, samples, valid)) > 1e-4


# ------------------------------------------------------------------------------ JAMFN Eq. 12


def test_jamfn_default_fusion_follows_eq_12_on_a_hand_computed_example():
    """L = 2, H = 2, one scale; X_A, X_V set by hand (forward hooks on the scale's convs).

    T_A = X_A [1, 0]^T = [1, 3], T_V = X_V [0, 1]^T = [1, 0]; FC_3 = identity;
    a = softmax(T_A) = [1/(1+e^2), e^2/(1+e^2)], v = softmax(T_V) = [e/(1+e), 1/(1+e)];
    Eq. 12: Fusion = a (x) X_A + v (x) X_V (each row scaled by its weight), (L x H);
    Eq. 14: class logits = W vec(F_out), W = [[0,0,0,0], [1,2,3,4]] -> z_1 = F00 + 2 F01 + 3 F10 + 4 F11.
    With X_A = [[1,2],[3,4]], X_V = [[0,1],[1,0]]: z_1 = 24.884883 (z_0 = 0). A second sample with one
    valid row (its padded row holds 100s): weights [1, 0] -> F = [[1, 3], [0, 0]], z_1 = 1 + 2*3 = 7.
    """
    dims = {"visual": 3, "audio": 2}
    model = (
        create_model("jamfn", dims, hidden=2, lstm_layers=1, channels=2, kernels=(1,), max_len=2, conv_act="none")
        .double()
        .eval()
    )
    XV = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [100.0, 100.0]]], dtype=torch.float64)  # (B, L, H)
    XA = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [100.0, 100.0]]], dtype=torch.float64)
    model.convs["visual"][0].register_forward_hook(lambda mod, inp, out: XV.transpose(1, 2))
    model.convs["audio"][0].register_forward_hook(lambda mod, inp, out: XA.transpose(1, 2))
    with torch.no_grad():
        model.score[0]["visual"].weight.copy_(torch.tensor([[0.0, 1.0]]))
        model.score[0]["audio"].weight.copy_(torch.tensor([[1.0, 0.0]]))
        for p in (model.score[0]["visual"].bias, model.score[0]["audio"].bias, model.joint[0].bias, model.fc.bias):
            p.zero_()
        model.joint[0].weight.copy_(torch.eye(4))
        model.fc.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]]))
    inputs = {"visual": torch.randn(2, 2, 3, dtype=torch.float64), "audio": torch.randn(2, 2, 2, dtype=torch.float64)}
    masks = {m: torch.tensor([[True, True], [True, False]]) for m in dims}
    with torch.no_grad():
        out = model(inputs, masks)
    e = math.e
    a0, a1 = 1 / (1 + e**2), e**2 / (1 + e**2)
    v0, v1 = e / (1 + e), 1 / (1 + e)
    F_out = [[a0 * 1 + v0 * 0, a0 * 2 + v0 * 1], [a1 * 3 + v1 * 1, a1 * 4 + v1 * 0]]
    z1 = F_out[0][0] + 2 * F_out[0][1] + 3 * F_out[1][0] + 4 * F_out[1][1]
    assert z1 == pytest.approx(24.884883, abs=1e-6)
    torch.testing.assert_close(out.aux["class_logits"], torch.tensor([[0.0, z1], [0.0, 7.0]], dtype=torch.float64))
    torch.testing.assert_close(out.logits, torch.tensor([z1, 7.0], dtype=torch.float64))  # z_1 - z_0
    torch.testing.assert_close(
        out.temporal_weights[0], torch.tensor([(a0 + v0) / 2, (a1 + v1) / 2], dtype=torch.float64)
    )
    y = torch.tensor([1.0, 0.0])
    loss = model.loss(out, y)  # two-class cross-entropy (§3.4)
    want = (-math.log(1 / (1 + math.exp(-z1))) - math.log(1 / (1 + math.exp(7.0)))) / 2
    assert float(loss) == pytest.approx(want, rel=1e-6)  # the loss is computed in float32
    # depdet's time-reduction reading is another model: it sums over time before the FC (H -> classes)
    reading = create_model(
        "jamfn", dims, hidden=2, lstm_layers=1, channels=2, kernels=(1,), max_len=2, fusion="attend_sum"
    )
    assert reading.fc.in_features == 2 and model.fc.in_features == 4


# ------------------------------------------------------------------------------ provenance and re-runs


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    from depdet.cli import main

    d = tmp_path_factory.mktemp("recipes") / "syn"
    main(["synth", str(d), "--n", "40", "--max-len", "40", "--length-scale", "0.06", "--signal", "3", "--seed", "4"])
    return d


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_folder_records_what_was_run_and_config_rerun_reproduces_metrics(small_synth, tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--data",
        small_synth,
        "--preset",
        "jamfn-dvlog",
        "--epochs",
        "3",
        "--seeds",
        "1",
        "2",
        "--model-opt",
        "hidden=4",
        "--model-opt",
        "lstm_layers=1",
        "--model-opt",
        "channels=4",
        "--model-opt",
        "max_len=40",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--run-dir",
        run,
    ]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    note = PRESETS["jamfn-dvlog"]["note"]
    assert "preset jamfn-dvlog:" in err and "§4.2" in err  # the note is printed
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["preset_note"] == note and cfg["command"][-2:] == ["--run-dir", str(run)]
    assert "train" in cfg["command"] and cfg["load"] == {
        "layout": "dvlog",
        "labels": None,
        "skip_missing": False,
        "skip_invalid": False,
    }
    env = json.loads((run / "env.json").read_text())
    for k in ("depdet", "git", "torch", "numpy", "opensmile", "dlib", "scikit-learn", "av", "device", "torch_threads"):
        assert k in env, k
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["torch_threads"] == 1
    assert env["scan"]["backend"] in ("kernel", "chunked")
    assert env["git"] is None or len(env["git"]["commit"]) == 40
    data = json.loads((run / "data.json").read_text())
    fp = data["fingerprint"]
    from depdet.pipeline.data.datasets import load_dataset

    ds = load_dataset(small_synth)
    assert fp["n"] == len(ds) == 40
    first = ds.samples[0]
    assert fp["samples"][0]["id"] == first.id
    assert fp["samples"][0]["sha256"]["visual"] == first.record["files"]["visual"]["sha256"]
    assert fp["samples"][0]["sha256_of"]["visual"] == "file"
    assert len(json.loads((run / "commands.jsonl").read_text().splitlines()[0])["command"]) > 3
    preds = _rows(run / "seed1" / "predictions.csv")
    n_test = sum(s.fold == "test" for s in ds.samples)
    assert sum(r["fold"] == "test" for r in preds) == n_test and {r["fold"] for r in preds} == {"valid", "test"}
    assert all(int(r["pred"]) == int(float(r["logit"]) > 0) for r in preds)

    # the checkpoint spells out every model option (a later change of a default cannot change what it rebuilds)
    from depdet.pipeline.inference.checkpoint import load_checkpoint

    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck.config["fusion"] == "elementwise" and ck.config["head"] == "ce2" and ck.config["hidden"] == 4
    assert ck.config["kernels"] == [1, 3, 5] and ck.config["max_len"] == 40

    # re-run from the folder's own config: same metrics (CPU), same per-sample predictions
    again = tmp_path / "again"
    code, out, err = run_cli(["train", "--config", run / "config.yaml", "--run-dir", again], capsys)
    assert code == 0, err
    m1, m2 = (json.loads((p / "metrics.json").read_text()) for p in (run, again))
    for key in ("test_mean_std", "test_calibrated_mean_std", "valid_mean_std", "baseline_all_depressed"):
        assert m1[key] == m2[key], key
    for r1, r2 in zip(m1["runs"], m2["runs"]):
        for key in ("name", "best_epoch", "valid", "test", "test_calibrated", "threshold", "temperature"):
            assert r1[key] == r2[key], key
    for seed in ("seed1", "seed2"):
        assert (run / seed / "predictions.csv").read_text() == (again / seed / "predictions.csv").read_text()
    assert (
        json.loads((again / "config.json").read_text())["config"]
        == json.loads((run / "config.json").read_text())["config"]
    )
    # --config re-runs as recorded: other training options are refused
    code, out, err = run_cli(["train", "--config", run / "config.yaml", "--epochs", "9"], capsys)
    assert code == 1 and "--config re-runs a run as recorded" in err


def test_rerun_refuses_changed_data(small_synth, tmp_path, capsys):
    import shutil

    data = tmp_path / "copy"
    shutil.copytree(small_synth, data)
    run = tmp_path / "r"
    code, out, err = run_cli(["train", "--data", data, "--model", "lr", "--seeds", "1", "--run-dir", run], capsys)
    assert code == 0, err
    labels = data / "labels.csv"
    rows = labels.read_text().splitlines()
    assert rows
    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.training.provenance import data_fingerprint

    want = json.loads((run / "data.json").read_text())["fingerprint"]["sha256"]
    assert data_fingerprint(load_dataset(data))["sha256"] == want
    # a different labels file (one label flipped) is other data
    edited = tmp_path / "labels.csv"
    parts = rows[1].split(",")
    parts[1] = "normal" if parts[1] == "depression" else "depression"
    edited.write_text("\n".join([rows[0], ",".join(parts)] + rows[2:]) + "\n")
    cfg = json.loads((run / "config.json").read_text())
    cfg["load"]["labels"] = str(edited)
    (run / "config.json").write_text(json.dumps(cfg))
    code, out, err = run_cli(["train", "--config", run / "config.json", "--run-dir", tmp_path / "r2"], capsys)
    assert code == 1 and "fingerprint" in err


# ------------------------------------------------------------------------------ ASYM / MIMML re-read


def test_asym_default_interacts_across_modalities_inside_the_bimamba_stage():
    """Abstract: "features from each modality are interactively enhanced using CNN and Bi-Mamba blocks"."""
    dims = {"visual": 6, "audio": 3}
    rng = np.random.default_rng(0)
    samples = [
        {"visual": rng.normal(size=(8, 6)).astype(np.float32), "audio": rng.normal(size=(8, 3)).astype(np.float32)}
    ]
    other = [{"visual": samples[0]["visual"], "audio": rng.normal(size=(8, 3)).astype(np.float32)}]

    def visual_mamba_input(interact):
        torch.manual_seed(0)
        model = create_model(
            "asym", dims, d_model=8, d_state=4, expand=2, n_heads=2, n_enhance=1, interact=interact
        ).eval()
        seen = []
        model.mamba["visual"].mamba.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
        with torch.no_grad():
            for smp in (samples, other):
                model(*collate(smp))
        return seen

    a, b = visual_mamba_input("exchange")
    assert (a - b).abs().max() > 1e-4  # the visual Bi-Mamba reads the audio stream
    a, b = visual_mamba_input("none")
    torch.testing.assert_close(a, b)  # depdet's earlier reading: no coupling in this stage
    assert create_model(
        "asym", dims, d_model=8, d_state=4, expand=2, n_heads=2, interact="shared_a"
    ).co_mamba.A_log.shape


def test_mimml_and_asym_cards_label_depdets_choices(capsys):
    for name, words in (
        ("mimml", ("multimodal feature fusion", "depdet's choice", "fusion", "late")),
        ("asym", ("interactively enhanced", "depdet's choice", "interact", "exchange")),
    ):
        code, out, err = run_cli(["models", name], capsys)
        assert code == 0, err
        for w in words:
            assert w in out, (name, w)
        assert "DepMamba's idea, not ASYM's" not in out
