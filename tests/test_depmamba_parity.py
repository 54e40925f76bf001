"""depdet's DepMamba against golden outputs of the official code (Jiaxin-Ye/DepMamba@6e96fd2, width 32).

The fixtures (``../shared/reference/parity/``, made as its README describes: the official model on CPU
with mamba v1.1.3's ``selective_scan_ref``) hold the official weights under their official names, the
inputs and masks, and the official eval logits of the padded batch, each sample run alone, the
train-mode logits (dropout 0) and the gradients. The official names are mapped onto depdet's modules
here, in the test (``official_to_depdet``), and loaded strictly. Checked on both scan backends
(``DEPDET_SCAN=auto`` = the compiled CPU kernel when it builds, ``chunked`` = the PyTorch scan) and at
chunk sizes 64 and 16 (the rows are 48, so 16 crosses chunk boundaries):

* ``padding="original"``: eval logits of the padded batch == the official ones (atol 1e-5), and each
  sample alone == the official sample alone;
* ``padding="fixed"``: eval logits of the padded batch == the official *each sample alone* (atol
  1e-5): the padding fix gives every clip the logit it has without padding;
* ``padding="original"``, train mode, dropout 0: logits and BCE loss == the official ones (atol 1e-5);
  every parameter gets a gradient, the mapped gradients cover exactly depdet's parameters, and each
  tensor's max |g - g_ref| / max |g_ref| <= 1e-4.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from depdet.models import create_model, scan_kernel

PARITY_DIR = Path(os.environ.get("DEPDET_PARITY_DIR", REPO.parent / "shared" / "reference" / "parity"))
#: file -> (audio dim, d_state, sha256) as listed in the fixtures' README
FIXTURES = {
    "dvlog": (
        "depmamba_official_dvlog_d32.pt",
        25,
        12,
        "f789c46f301e44cadc76d71f99d187c47a6bbb8ecc449a464c0e7c6a21f7dc04",
    ),
    "lmvd": (
        "depmamba_official_lmvd_d32.pt",
        128,
        16,
        "7a4de622a77b659ddf1e4a5f83068ee8632b305a9390f739d481d5be42cf8da4",
    ),
}
WIDTH = 32
VISUAL = 136
MOD = {"v": "visual", "a": "audio"}
IDX = {"v": 0, "a": 1}  # depdet's CollaborativeBiMamba lists modalities visual first


def _load(dataset: str) -> dict:
    name, _, _, sha = FIXTURES[dataset]
    path = PARITY_DIR / name
    if not path.is_file():
        pytest.skip(
            f"parity fixture {path} not found (the ../shared folder beside the checkout; "
            "set DEPDET_PARITY_DIR to point elsewhere)"
        )
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha, f"{path} is not the recorded fixture"
    return torch.load(path, weights_only=True)


def _rename(key: str) -> str | None:
    """depdet's name of one official key (None: a key with no counterpart, ``a_downsample``).

    The official model registers the CNN layers twice (``{v,a}_net.{0,1}`` / ``net.{0,1}`` are the same
    tensors as ``{v,a}_conv``/``{v,a}_bn`` and ``conv1``/``bn1``): aliases map to the same name.
    """
    if ".a_downsample." in key:
        return None
    rules = [
        (r"conv_video\.(.*)", r"proj.visual.\1"),
        (r"conv_audio\.(.*)", r"proj.audio.\1"),
        (r"cossm_encoder\.cnn_layers\.0\.([va])_(?:conv|net\.0)\.(.*)", lambda m: f"co_cnn.{MOD[m[1]]}.conv.{m[2]}"),
        (r"cossm_encoder\.cnn_layers\.0\.([va])_(?:bn|net\.1)\.(.*)", lambda m: f"co_cnn.{MOD[m[1]]}.bn.{m[2]}"),
        (r"cossm_encoder\.mamba_layers\.0\.mamba\.(A_log|A_b_log)", r"co_mamba.\1"),
        (
            r"cossm_encoder\.mamba_layers\.0\.mamba\.([va])_(in_proj|out_proj)\.(.*)",
            lambda m: f"co_mamba.{m[2]}.{IDX[m[1]]}.{m[3]}",
        ),
        (
            r"cossm_encoder\.mamba_layers\.0\.mamba\.([va])_D(_b)?",
            lambda m: f"co_mamba.{'bwd' if m[2] else 'fwd'}.{IDX[m[1]]}.D",
        ),
        (
            r"cossm_encoder\.mamba_layers\.0\.mamba\.([va])_(conv1d|x_proj|dt_proj)(_b)?\.(.*)",
            lambda m: f"co_mamba.{'bwd' if m[3] else 'fwd'}.{IDX[m[1]]}.{m[2]}.{m[4]}",
        ),
        (r"cossm_encoder\.mamba_layers\.0\.norm1\.norm\.(.*)", r"co_norm.audio.\1"),  # norm1 = audio
        (r"cossm_encoder\.mamba_layers\.0\.norm2\.norm\.(.*)", r"co_norm.visual.\1"),  # norm2 = visual
        (r"enssm_encoder\.cnn_layers\.0\.(?:conv1|net\.0)\.(.*)", r"en_cnn.conv.\1"),
        (r"enssm_encoder\.cnn_layers\.0\.(?:bn1|net\.1)\.(.*)", r"en_cnn.bn.\1"),
        (
            r"enssm_encoder\.mamba_layers\.0\.mamba\.(A_log|A_b_log|in_proj\.weight|out_proj\.weight)",
            r"en_mamba.mamba.\1",
        ),
        (r"enssm_encoder\.mamba_layers\.0\.mamba\.D(_b)?", lambda m: f"en_mamba.mamba.{'bwd' if m[1] else 'fwd'}.D"),
        (
            r"enssm_encoder\.mamba_layers\.0\.mamba\.(conv1d|x_proj|dt_proj)(_b)?\.(.*)",
            lambda m: f"en_mamba.mamba.{'bwd' if m[2] else 'fwd'}.{m[1]}.{m[3]}",
        ),
        (r"enssm_encoder\.mamba_layers\.0\.norm1\.norm\.(.*)", r"en_mamba.norm.\1"),
        (r"output\.(.*)", r"head.\1"),
    ]
    for pattern, repl in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return repl(m) if callable(repl) else m.expand(repl)
    raise AssertionError(f"official key {key!r} has no mapping")


def _permute(name: str, t: torch.Tensor) -> torch.Tensor:
    """The official EnSSM input is cat([audio, visual]); depdet's is cat([visual, audio]): depdet's
    channel j is official channel perm[j] (an exact re-parametrisation, the fixtures' README)."""
    perm = torch.cat([torch.arange(WIDTH, 2 * WIDTH), torch.arange(WIDTH)])
    if name == "en_cnn.conv.weight":
        return t[perm][:, perm]
    if name.startswith(("en_cnn.bn.", "en_mamba.norm.")) and t.dim() == 1:
        return t[perm]
    if name in ("en_mamba.mamba.in_proj.weight", "head.weight"):
        return t[:, perm]
    if name == "en_mamba.mamba.out_proj.weight":
        return t[perm]
    return t


def official_to_depdet(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official names and channel order -> depdet's (state dicts and gradient dicts alike)."""
    out: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        name = _rename(key)
        if name is None:
            continue
        t = _permute(name, t)
        if name in out:  # an alias of a tensor already mapped: it must be the same tensor
            assert torch.equal(out[name], t), f"alias {key} differs from {name}"
            continue
        out[name] = t
    return out


def _model(fx: dict, dataset: str, padding: str, chunk_size: int, dropout: float = 0.1):
    _, audio, d_state, _ = FIXTURES[dataset]
    assert fx["meta"]["d_state"] == d_state and fx["meta"]["audio_dim"] == audio and fx["meta"]["width"] == WIDTH
    model = create_model(
        "depmamba",
        {"visual": VISUAL, "audio": audio},
        d_model=WIDTH,
        d_state=d_state,
        padding=padding,
        chunk_size=chunk_size,
        dropout=dropout,
    )
    model.load_state_dict(official_to_depdet(fx["official_state_dict"]), strict=True)
    return model


def _batch(x: torch.Tensor, mask: torch.Tensor):
    m = mask.bool()
    return {"visual": x[..., :VISUAL], "audio": x[..., VISUAL:]}, {"visual": m, "audio": m}


#: (DEPDET_SCAN, chunk_size): the compiled kernel ignores chunk_size (a sequential recurrence), so the
#: chunk sizes are crossed with the chunked PyTorch scan only
BACKENDS = [("auto", 64), ("chunked", 64), ("chunked", 16)]


@pytest.fixture(params=BACKENDS, ids=[f"{b}-chunk{c}" for b, c in BACKENDS])
def chunk_size(request, monkeypatch):
    backend, chunk = request.param
    monkeypatch.setenv(scan_kernel.ENV_BACKEND, backend)
    return chunk


@pytest.mark.parametrize("dataset", ["dvlog", "lmvd"])
def test_eval_logits_match_the_official_code(dataset, chunk_size):
    fx = _load(dataset)
    x, mask, lengths = fx["inputs"], fx["mask"], fx["lengths"]
    # the fixture tells the two padding modes apart: the official padded batch leaks (samples 2, 3)
    assert (fx["eval_logits"] - fx["each_sample_alone"]).abs().max() > 1e-2
    orig = _model(fx, dataset, "original", chunk_size).eval()
    fixed = _model(fx, dataset, "fixed", chunk_size).eval()
    with torch.no_grad():
        got = orig(*_batch(x, mask)).logits
        torch.testing.assert_close(got, fx["eval_logits"], rtol=0, atol=1e-5)
        alone = torch.cat([orig(*_batch(x[b : b + 1, :n], mask[b : b + 1, :n])).logits for b, n in enumerate(lengths)])
        torch.testing.assert_close(alone, fx["each_sample_alone"], rtol=0, atol=1e-5)
        got = fixed(*_batch(x, mask)).logits
        torch.testing.assert_close(got, fx["each_sample_alone"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("dataset", ["dvlog", "lmvd"])
def test_train_logits_loss_and_gradients_match_the_official_code(dataset, chunk_size):
    fx = _load(dataset)
    model = _model(fx, dataset, "original", chunk_size, dropout=0.0).train()
    out = model(*_batch(fx["inputs"], fx["mask"]))
    torch.testing.assert_close(out.logits.detach(), fx["train_logits_no_dropout"], rtol=0, atol=1e-5)
    loss = model.loss(out, fx["labels"])
    ref_loss = F.binary_cross_entropy_with_logits(fx["train_logits_no_dropout"], fx["labels"])
    assert float(loss.detach()) == pytest.approx(float(fx["train_loss"]), abs=1e-5)
    assert float(ref_loss) == pytest.approx(float(fx["train_loss"]), abs=1e-6)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    ref = official_to_depdet(fx["grads"])
    assert set(ref) == set(grads)
    assert all("a_downsample" in k for k in fx["params_without_grad"])
    worst = {n: float((grads[n] - ref[n]).abs().max() / ref[n].abs().max().clamp_min(1e-30)) for n in grads}
    bad = {n: r for n, r in worst.items() if r > 1e-4}
    assert not bad, bad
