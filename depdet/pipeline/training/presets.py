"""Training recipes of the papers (``depdet train --preset NAME``), with their sources.

Every value comes from models.md §3 (the reference repositories' configs and scripts). Where a
paper's recipe is not public, the preset says which published recipe it borrows, in ``note``.
Command-line options given explicitly override preset values.

Fields: ``model`` and ``model_config`` (registry name and options), ``optimizer``, ``lr``,
``weight_decay``, ``batch_size``, ``epochs``, ``scheduler`` (``none`` or ``cosine``: AllenYolk's
CosineAnnealingLR(T_max=epochs//5, eta_min=lr/20) stepped per epoch), ``patience`` (early stopping;
None = train all epochs as the references do), ``select`` (checkpoint criterion on valid),
``preprocess`` (PreprocessConfig fields), ``seeds``, and what the row counts assume:

* ``dataset``: the dataset the recipe was published for (``dvlog`` or ``lmvd``);
* ``fps``: rows per second of that dataset's features (1.0 for every preset here: D-Vlog and LMVD
  have one row per second). A preset counts in rows: ``crop_min_len`` (500/400), ``max_len`` (596)
  and JAMFN's fixed 596-step joint-attention window (its model default). On features at another
  rate those numbers mean other durations, so :class:`~depdet.pipeline.training.train.Trainer`
  refuses such a dataset (``ConfigError``) unless ``rescale_rows=True`` (CLI ``--rescale-rows``)
  asks it to multiply those row counts by ``data fps / preset fps`` (see
  :func:`~depdet.pipeline.training.train.rows_for_fps`).
"""

from __future__ import annotations

from copy import deepcopy

from depdet.errors import ConfigError

_DEPMAMBA_COMMON = dict(optimizer="adam", lr=1e-4, weight_decay=0.0, batch_size=16, epochs=120, scheduler="none",
                        patience=None, select="depmamba", seeds=[1, 2, 3])
_ALLENYOLK = dict(optimizer="adam", lr=1e-4, weight_decay=0.0, batch_size=8, epochs=300, scheduler="cosine",
                  patience=None, select="acc", seeds=[1, 2, 3], preprocess={"crop_aug": False})

PRESETS: dict[str, dict] = {
    "depmamba-dvlog": dict(
        model="depmamba", model_config={"d_state": 12}, dataset="dvlog", fps=1.0,
        preprocess={"crop_aug": True, "crop_min_len": 500}, **_DEPMAMBA_COMMON,
        note="Jiaxin-Ye/DepMamba main.py/config.yaml: Adam lr 1e-4 (the README's runs; config.yaml says 8e-5), "
             "batch 16, 120 epochs, no scheduler (config's 'cos' is unused), select strictly-better mean(acc,P,R,F1) "
             "on valid, seeded random crops >= 500 rows; 3 runs (the reference's range(3), unseeded)."),
    "depmamba-lmvd": dict(
        model="depmamba", model_config={"d_state": 16}, dataset="lmvd", fps=1.0,
        preprocess={"crop_aug": True, "crop_min_len": 400}, **_DEPMAMBA_COMMON,
        note="As depmamba-dvlog with d_state 16 and crops >= 400 rows (DepMamba's LMVD config)."),
    "dynmultidep-dvlog": dict(
        model="dynmultidep", model_config={}, dataset="dvlog", fps=1.0,
        preprocess={"crop_aug": True, "crop_min_len": 500},
        **{**_DEPMAMBA_COMMON, "lr": 5e-4, "batch_size": 32},
        note="3166074787/DynMultiDep@5fd29e3 config: Adam 5e-4, batch 32, 120 epochs, DepMamba's selection and crops."),
    "dynmultidep-lmvd": dict(
        model="dynmultidep", model_config={"d_state": 16}, dataset="lmvd", fps=1.0,
        preprocess={"crop_aug": True, "crop_min_len": 400},
        **{**_DEPMAMBA_COMMON, "lr": 5e-4, "batch_size": 32},
        note="As dynmultidep-dvlog with d_state 16 (the public LMVD config) and LMVD crops >= 400 rows."),
    "detector-dvlog": dict(
        model="detector", model_config={}, dataset="dvlog", fps=1.0, **_ALLENYOLK,
        note="AllenYolk/depression-detection main.py/config.yaml: Adam 1e-4, batch 8, 300 epochs, cosine "
             "(T_max=epochs//5, eta_min=lr/20), select best valid accuracy, no augmentation."),
    "tamfn-dvlog": dict(
        model="tamfn", model_config={}, dataset="dvlog", fps=1.0, **_ALLENYOLK,
        note="AllenYolk's TAMFN re-implementation recipe (same as detector-dvlog); the official TAMFN code is not public."),
    "jamfn-dvlog": dict(
        model="jamfn", model_config={}, dataset="dvlog", fps=1.0, **_ALLENYOLK,
        note="JAMFN's training recipe is not public (no code found). Borrowed: the AllenYolk D-Vlog recipe used for "
             "TAMFN, the same authors' (Zhou et al.) previous model. Not the paper's own recipe."),
    "dvlog-replication": dict(
        model="detector", model_config={}, dataset="dvlog", fps=1.0, optimizer="adam", lr=2e-4, weight_decay=0.0,
        batch_size=32, epochs=50, scheduler="none", patience=None, select="loss", seeds=[0, 1, 42, 1123, 3407],
        preprocess={"crop_aug": False, "max_len": 596},
        note="StanMey/Master_thesis_DVlog replication: Adam 2e-4, batch 32, 50 epochs, lowest valid loss, seeds "
             "0/1/42/1123/3407, sequences capped at 596 rows (the paper pads/truncates to 596; here the cap is a random "
             "window in training and the first 596 rows in evaluation). Its softmax+CE loss is not copied (BCE on one logit)."),
}


def list_presets() -> list[str]:
    """Names of all presets."""
    return sorted(PRESETS)


def get_preset(name: str) -> dict:
    """A deep copy of preset ``name``; ConfigError naming the choices if unknown."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", hint=f"choose from {', '.join(list_presets())}")
    return deepcopy(PRESETS[name])
