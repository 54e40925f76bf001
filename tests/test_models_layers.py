"""Shared model layers (depdet/models/layers.py).

``test_masked_batchnorm_matches_pinned_outputs`` pins the behaviour of the two masked BatchNorms
that existed before issue 23 (``depdet.models.detector.MaskedBatchNorm1d``, used by the Depression
Detector and TAMFN, and ``depdet.models.mamba.MaskedBatchNorm1d``, used by the Mamba models): the
golden values in ``tests/data/masked_batchnorm_golden.json`` were written by the old classes
(``python tests/test_models_layers.py --write`` at the commit that added this test) and the merged
class must reproduce them with the constructor settings of each old variant (see ``_make``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "masked_batchnorm_golden.json"
VARIANTS = ("detector", "mamba")


def _make(variant: str, **kw):
    """A masked BatchNorm over 3 channels with the semantics of the old ``variant`` class."""
    from depdet.models.layers import MaskedBatchNorm1d

    # the old depdet.models.detector class (Depression Detector, TAMFN) = min_valid_steps=1;
    # the old depdet.models.mamba class (DepMamba and the models built on it) = min_valid_steps=2
    return MaskedBatchNorm1d(3, min_valid_steps=1 if variant == "detector" else 2, **kw)


def _stats(bn) -> dict:
    return {
        "running_mean": bn.running_mean.tolist(),
        "running_var": bn.running_var.tolist(),
        "num_batches_tracked": int(bn.num_batches_tracked),
    }


def _scenario(variant: str, momentum_none: bool = False) -> dict:
    """Outputs, input/affine gradients and running statistics of a fixed sequence of calls."""
    g = torch.Generator().manual_seed(23)
    bn = _make(variant, momentum=None) if momentum_none else _make(variant)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(3, generator=g) * 0.5 + 1)
        bn.bias.copy_(torch.randn(3, generator=g))
    x = [torch.randn(2, 3, 6, generator=g) * 2 + 1 for _ in range(4)]
    partial = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)  # padded tail + a hole
    one = torch.zeros(2, 6, dtype=torch.bool)
    one[1, 2] = True
    none = torch.zeros(2, 6, dtype=torch.bool)
    out: dict = {}
    bn.train()
    steps = [
        ("train_partial", x[0], partial),
        ("train_nomask", x[1], None),
        ("train_allvalid", x[2], torch.ones(2, 6, dtype=torch.bool)),
        ("train_partial2", x[3], partial),
    ]
    if not momentum_none:
        steps += [("train_one_valid", x[1], one), ("train_no_valid", x[2], none)]
    for name, xi, m in steps:
        xi = xi.clone().requires_grad_(True)
        bn.weight.grad = bn.bias.grad = None
        y = bn(xi, m)
        (y * torch.arange(1, 37, dtype=y.dtype).view(2, 3, 6)).sum().backward()
        out[name] = {
            "y": y.detach().tolist(),
            "grad_x": xi.grad.tolist(),
            "grad_weight": bn.weight.grad.tolist(),
            "grad_bias": bn.bias.grad.tolist(),
            **_stats(bn),
        }
    if not momentum_none:
        bn.eval()
        with torch.no_grad():
            out["eval_partial"] = {"y": bn(x[0], partial).tolist(), **_stats(bn)}
            out["eval_nomask"] = {"y": bn(x[1]).tolist(), **_stats(bn)}
    return out


def _all() -> dict:
    # momentum=None: only the Mamba variant is pinned (it follows nn.BatchNorm1d's cumulative average;
    # the old detector class read None as 0.1, a setting no model used; see layers.MaskedBatchNorm1d)
    return {**{v: _scenario(v) for v in VARIANTS}, "mamba_momentum_none": _scenario("mamba", momentum_none=True)}


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        torch.testing.assert_close(
            torch.tensor(a, dtype=torch.float64),
            torch.tensor(b, dtype=torch.float64),
            rtol=1e-5,
            atol=1e-6,
            msg=lambda m: f"{path}: {m}",
        )
    else:
        assert a == b, path


def test_masked_batchnorm_matches_pinned_outputs():
    _close(_all(), json.loads(GOLDEN.read_text()))


def test_masked_batchnorm_state_dict_is_batchnorm1d():
    # checkpoints store these layers' state under nn.BatchNorm1d's keys: they must not change
    for v in VARIANTS:
        assert _make(v).state_dict().keys() == torch.nn.BatchNorm1d(3).state_dict().keys()


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.write_text(json.dumps(_all()) + "\n")
