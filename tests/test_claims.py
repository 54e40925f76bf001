"""Issue 21 (items 1 and 7): what users read agrees with what the code does.

* Paper presets train on the references' batches (random order, whole batches); depdet's batch order
  and micro-batches stay in the ``*-fixed`` variants and outside presets, and every text says what
  they change (no "same results in expectation").
* JAMFN's paper preset has no activation after its convolutions (Eq. 6 names none); the TAMFN note
  agrees with its config; ASYM's fusion is described as the serial structure its forward has;
  DynMultiDep's card says the paper's AU/gaze inputs are absent; MIMML's text branch is not claimed
  loadable by ``train``; ``padding="fixed"`` is described as what the tests below show; every preset
  a text names exists.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli

from depdet.models import create_model
from depdet.models.registry import model_card
from depdet.pipeline.data.batching import DEFAULT_MAX_TOKENS, collate
from depdet.pipeline.training.config import TrainConfig, resolve_preset
from depdet.pipeline.training.presets import PRESETS, list_presets

PAPER = [n for n in list_presets() if PRESETS[n]["kind"] == "paper"]
FIXED = [n for n in list_presets() if n.endswith("-fixed")]


def _texts() -> dict[str, str]:
    """README and every source file users read (help texts, notes, docstrings, cards)."""
    files = [REPO / "README.md", *sorted((REPO / "depdet").rglob("*.py")), *sorted((REPO / "bench").glob("*.py"))]
    return {str(p.relative_to(REPO)): p.read_text() for p in files}


# ------------------------------------------------------------------------------ item 1: batches


def test_paper_presets_train_on_the_references_batches(capsys):
    assert {"depmamba-dvlog", "depmamba-lmvd", "jamfn-dvlog", "tamfn-dvlog", "detector-dvlog"} <= set(PAPER)
    for n in PAPER:
        r = resolve_preset(n)
        assert (r["bucketing"], r["max_tokens"]) == (False, 0), n
        assert "bucketing=False" in r["note"] and "max_tokens=0" in r["note"], n
    code, out, err = run_cli(["presets", "depmamba-dvlog", "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["bucketing"] is False and r["max_tokens"] == 0


def test_fixed_variants_keep_depdets_batches_and_say_what_they_change():
    assert FIXED
    for n in FIXED:
        r = resolve_preset(n)
        assert (r["bucketing"], r["max_tokens"]) == (True, DEFAULT_MAX_TOKENS), n
        text = " ".join(r["changes"])
        assert "bucketing=True" in text and f"max_tokens={DEFAULT_MAX_TOKENS}" in text and "BatchNorm" in text, n
        if r["model"] == "depmamba":  # has BatchNorm: its statistics are what buckets and micro-batches change
            assert "BatchNorm batch statistics" in text and "normalises over" in text and "EnSSM" in text, n
        else:  # DynMultiDep has none: no text may say they change
            assert "no BatchNorm" in text and "EnSSM" not in text and "normalises over" not in text, n
    c = TrainConfig(model="depmamba")  # without a preset: depdet's defaults
    assert (c.bucketing, c.max_tokens) == (True, DEFAULT_MAX_TOKENS)


def test_explicit_options_override_a_paper_presets_batches():
    c = TrainConfig.from_preset("depmamba-dvlog", bucketing=True, max_tokens=4096)
    assert (c.bucketing, c.max_tokens) == (True, 4096)
    c = TrainConfig.from_preset("depmamba-dvlog-fixed", bucketing=False, max_tokens=0)
    assert (c.bucketing, c.max_tokens) == (False, 0)


def test_no_text_claims_bucketing_gives_the_same_results_in_expectation():
    pattern = re.compile(
        r"same\s+(?:results\s+)?in\s+expectation|results\s+in\s+expectation|in\s+expectation\s+every", re.IGNORECASE
    )
    bad = [f for f, t in _texts().items() if pattern.search(t)]
    assert not bad, bad


def _partners_logit(model, clip, partner):
    """The logit of ``clip`` in a train-mode batch with ``partner``."""
    inputs, masks = collate([clip, partner])
    torch.manual_seed(0)
    return float(model(inputs, masks).logits[0])


def test_which_clips_share_a_batch_changes_a_clips_training_logit_as_the_notes_say():
    """Why paper presets must not bucket: with the public padding leak (and with BatchNorm batch
    statistics even when padding is masked) a clip's training logit depends on its batch partners."""
    rng = np.random.default_rng(0)
    dims = {"visual": 6, "audio": 3}

    def clip(T):
        return {m: rng.normal(size=(T, d)).astype(np.float32) for m, d in dims.items()}

    a, short, long_ = clip(8), clip(8), clip(30)
    for padding in ("original", "fixed"):
        torch.manual_seed(0)
        model = create_model("depmamba", dims, d_model=8, d_state=4, expand=2, dropout=0.0, padding=padding).train()
        with torch.no_grad():
            assert abs(_partners_logit(model, a, short) - _partners_logit(model, a, long_)) > 1e-4, padding
    # without batch statistics and with masking, the partners do not matter (no BatchNorm in either)
    for name, cfg in (
        ("jamfn", dict(hidden=4, lstm_layers=1, channels=4, jaf="pointwise")),
        ("dynmultidep", dict(d_model=8, d_state=4, expand=2, dropout=0.0, padding="fixed")),
    ):
        torch.manual_seed(0)
        model = create_model(name, dims, **cfg).train()
        with torch.no_grad():
            assert _partners_logit(model, a, short) == pytest.approx(_partners_logit(model, a, long_), abs=1e-5), name
    torch.manual_seed(0)
    model = create_model("dynmultidep", dims, d_model=8, d_state=4, expand=2, dropout=0.0, padding="original").train()
    with torch.no_grad():  # its public-code padding mode leaks: the partners matter
        assert abs(_partners_logit(model, a, short) - _partners_logit(model, a, long_)) > 1e-4


def test_train_help_says_what_bucketing_and_max_tokens_change(capsys):
    code, out, err = run_cli(["train", "--help"], capsys)
    assert code == 0, err
    flat = " ".join(out.replace("│", " ").split())
    assert "expectation" not in flat
    assert "paper presets" in flat and "BatchNorm" in flat and f"{DEFAULT_MAX_TOKENS:,}" in flat


# ------------------------------------------------------------------------------ item 7: presets and cards


def test_every_preset_a_text_names_exists():
    names = set(list_presets())
    bad = []
    for f, t in _texts().items():
        for m in re.finditer(r"--preset[ =]([A-Za-z0-9_.-]+)", t):
            if m.group(1) not in names and m.group(1) != "NAME":
                bad.append((f, m.group(1)))
        for m in re.finditer(r"`((?:depmamba|dynmultidep|jamfn|tamfn|detector|dvlog)-[a-z-]+)`", t):
            if m.group(1) not in names:
                bad.append((f, m.group(1)))
    assert not bad, bad


def test_jamfn_paper_preset_has_no_activation_the_paper_does_not_state():
    c = TrainConfig.from_preset("jamfn-dvlog")
    assert c.model_config.get("conv_act") == "none"
    note = PRESETS["jamfn-dvlog"]["note"]
    assert "conv_act='none'" in note and "Eq. 6" in note
    model = create_model(
        "jamfn",
        {"visual": 6, "audio": 3},
        **{**c.model_config, "hidden": 4, "lstm_layers": 1, "channels": 4, "max_len": 10},
    )
    x = torch.tensor([-1.0, 2.0])
    assert torch.equal(model._act(x), x)  # X_m of Eq. 7-12 is the convolution's output itself
    relu = create_model("jamfn", {"visual": 6, "audio": 3}, hidden=4, lstm_layers=1, channels=4, max_len=10)
    assert torch.equal(relu._act(x), torch.relu(x))  # the model's default keeps depdet's ReLU ...
    about = " ".join(model_card("jamfn")["about"].split())
    assert "jamfn-dvlog" in about and "conv_act" in about  # ... and its card says the preset turns it off


def test_tamfn_note_agrees_with_its_config():
    p = PRESETS["tamfn-dvlog"]
    assert p["model_config"]["use_masks"] is False
    assert "use_masks=False" in p["note"]
    assert "no option" not in p["note"] and "depdet's tamfn masks padding" not in p["note"]
    # the config really is the unmasked behaviour: padding changes the output
    rng = np.random.default_rng(0)
    smp = [
        {"visual": rng.normal(size=(40, 6)).astype(np.float32), "audio": rng.normal(size=(40, 3)).astype(np.float32)}
    ]
    torch.manual_seed(0)
    model = create_model("tamfn", {"visual": 6, "audio": 3}, d=8, num_layers=1, use_masks=False).eval()
    with torch.no_grad():
        alone = model(*collate(smp)).logits[0]
        inputs, masks = collate(smp)
        padded = {m: torch.cat([x, torch.zeros(1, 24, x.shape[2])], 1) for m, x in inputs.items()}
        pmask = {m: torch.cat([x, torch.zeros(1, 24, dtype=torch.bool)], 1) for m, x in masks.items()}
        assert abs(float(model(padded, pmask).logits[0] - alone)) > 1e-5


def test_asym_card_describes_the_serial_fusion_its_forward_has():
    about = " ".join(model_card("asym")["about"].split())
    assert "serial" in about and "not parallel" in about
    dims = {"visual": 6, "audio": 3}
    rng = np.random.default_rng(0)
    smp = [{"visual": rng.normal(size=(8, 6)).astype(np.float32), "audio": rng.normal(size=(8, 3)).astype(np.float32)}]

    def branch_input(bias):
        torch.manual_seed(0)
        model = create_model("asym", dims, d_model=8, d_state=4, expand=2, n_heads=2, n_enhance=1).eval()
        with torch.no_grad():
            model.modality_gate.bias.copy_(torch.tensor(bias))
        seen = []
        model.branches[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
        with torch.no_grad():
            out = model(*collate(smp))
        return seen[0], out.modality_weights

    (x1, w1), (x2, w2) = branch_input([3.0, -3.0]), branch_input([-3.0, 3.0])
    assert (w1 - w2).abs().max() > 0.5
    # serial: the multi-scale branches read the streams already re-weighted by the modality gate
    assert (x1 - x2).abs().max() > 1e-3


def test_dynmultidep_card_says_the_papers_au_and_gaze_inputs_are_absent():
    from depdet.extractors import EXTRACTOR_DIMS

    card = model_card("dynmultidep")
    text = " ".join((card["about"] + " " + card["description"]).split())
    for w in ("action units", "gaze", "absent"):
        assert w in text, w
    assert not any(k in EXTRACTOR_DIMS for k in ("aus", "au", "gaze", "openface"))  # what the card says is absent


def test_mimml_text_branch_is_not_claimed_loadable_by_train():
    from depdet.extractors import MODALITIES

    assert "text" not in MODALITIES  # no loader, extractor or store view carries a text modality
    about = " ".join(model_card("mimml")["about"].split())
    assert "enables the paper's third modality" not in about
    assert "Python API" in about and "no depdet command" in about
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `mimml`"))
    assert "Python API" in row and "optional text modality (not produced by `extract`)" not in row


# ------------------------------------------------------------------------------ item 7: padding="fixed"


def _noface(T, rows, seed, garbage=0.0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(T, 6)).astype(np.float32)
    a = rng.normal(size=(T, 3)).astype(np.float32)
    face = np.ones(T, bool)
    face[rows] = False
    v[~face] = garbage
    return {"visual": v, "audio": a}, {"visual": face, "audio": np.ones(T, bool)}


@pytest.mark.parametrize("name", ["depmamba", "dynmultidep"])
@pytest.mark.parametrize("training", [False, True])
def test_fixed_invalid_rows_values_never_reach_the_output_but_are_not_cut_out(name, training):
    """What the docs now say of padding="fixed", shown: (1) the values held at invalid rows do not
    matter; (2) the rows still occupy time steps (convolutions see zeros there, the union mask keeps a
    row where another modality is valid), so the logit is not the one of the clip with them cut out."""
    torch.manual_seed(0)
    model = create_model(
        name, {"visual": 6, "audio": 3}, d_model=8, d_state=4, expand=2, dropout=0.0, padding="fixed"
    ).train(training)
    (s0, v0), (s1, v1) = _noface(12, [4, 5], 1), _noface(12, [4, 5], 1, garbage=7.0)
    with torch.no_grad():
        a = model(*collate([s0], [v0])).logits
        b = model(*collate([s1], [v1])).logits
        keep = v0["visual"]
        cut = model(*collate([{m: x[keep] for m, x in s0.items()}])).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert abs(float(a - cut)) > 1e-4
    texts = _texts()
    for f in ("README.md", "depdet/pipeline/training/presets.py", f"depdet/models/{name}.py"):
        assert "skipped by every conv" not in texts[f] and "skips padding **and** invalid rows" not in texts[f], f


def test_train_with_a_paper_preset_records_the_references_batches(tmp_path, capsys, one_torch_thread):
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic

    data = tmp_path / "syn"
    make_synthetic(data, SynthConfig(n=16, min_len=10, max_len=20, signal=3.0, seed=1))
    args = [
        "train",
        "--data",
        data,
        "--preset",
        "dvlog-replication",
        "--model",
        "fusion_concat",
        "--model-opt",
        "hidden=4",
        "--epochs",
        "1",
        "--seeds",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    code, _, err = run_cli(args + ["--run-dir", tmp_path / "paper"], capsys)
    assert code == 0, err
    recorded = json.loads((tmp_path / "paper" / "config.json").read_text())["config"]
    assert (recorded["bucketing"], recorded["max_tokens"]) == (False, 0)
    # explicit options win (the CLI passes them as TrainConfig.from_preset overrides)
    c = TrainConfig.from_preset("dvlog-replication", bucketing=True, max_tokens=64)
    assert (c.bucketing, c.max_tokens) == (True, 64)


def test_readme_parity_sentence_points_at_the_parity_test():
    readme = (REPO / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `depmamba` |"))
    assert "tests/test_depmamba_parity.py" in row and "official code" in row
    assert (REPO / "tests" / "test_depmamba_parity.py").is_file()
