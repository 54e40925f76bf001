"""Training recipes (``depdet train --preset NAME``, ``depdet presets [NAME] [--json]``), with their sources.

Two kinds of preset:

* **paper presets** (``depmamba-dvlog``, ``jamfn-dvlog``, ...) reproduce the named paper's public
  code (models.md §1.3, §2, §3: the reference repositories' loaders, configs and scripts) or, where
  there is no code, the paper's own text: preprocessing (none beyond casting to float32, as the
  public loaders), the model's padding behaviour and mask rule, precision (float32), optimiser,
  schedule, checkpoint selection and seeds. Every difference that remains is listed in ``note``
  with its reason.
* **depdet presets** (names ending in ``-fixed``) are a paper preset plus depdet's improvements,
  each listed in ``changes``: the padding fix (``padding="fixed"``), training-fold standardisation
  and the landmark row z-score, float16 autocast on CUDA, depdet's batch order and micro-batches.
  ``variant_of`` names the paper preset.

Training batches: a **paper preset** trains on the references' batches: the recipe's batch size, one
random permutation per epoch cut into consecutive batches, each batch in one forward
(``bucketing=False``, ``max_tokens=0``). Anything else changes what the model computes wherever a
clip's logit depends on the clips that share its batch: with the public padding leak
(``padding="original"``) or ``use_masks=False`` through the padding its partners bring, and in every
model with BatchNorm (DepMamba's conv blocks, ASYM, detector, TAMFN; also with ``padding="fixed"``)
through the batch statistics. depdet's batch order (seeded length buckets, ``bucketing=True``) and
micro-batches (a batch over ``DEFAULT_MAX_TOKENS`` padded rows split, gradients accumulated:
BatchNorm statistics per micro-batch) are the defaults without a preset and in the ``*-fixed``
variants, where ``changes`` lists them. Whole batches of long clips need memory in proportion to
their padded rows: ``--max-tokens N`` bounds it at the cost above (not the paper's run then).

Every run (both kinds) also gets depdet's additions: a temperature and threshold fitted on validation
(reported separately as ``*_calibrated``, the uncalibrated metrics stay), and evaluation in
length-sorted batches (the scorer's bucketing; with the padding leak this changes valid/test logits
slightly, and so possibly the epoch kept: ``note`` says so where it applies).

Command-line options given explicitly override preset values.

Fields: ``model`` and ``model_config`` (registry name and options), ``optimizer``, ``lr``,
``weight_decay``, ``batch_size``, ``epochs``, ``scheduler`` (``none`` or ``cosine``: AllenYolk's
CosineAnnealingLR(T_max=epochs//5, eta_min=lr/20) stepped per epoch), ``patience`` (early stopping;
None = train all epochs), ``select`` (checkpoint criterion on valid), ``amp`` (float16 autocast on
CUDA), ``preprocess`` (every PreprocessConfig field), ``seeds``; metadata (not TrainConfig fields):
``kind`` (``paper`` or ``depdet``), ``sources``, ``note``, ``changes``/``variant_of`` (depdet
presets), and what the row counts assume:

* ``dataset``: the dataset the recipe was published for (``dvlog`` or ``lmvd``);
* ``fps``: rows per second of that dataset's features (1.0 for every preset here: D-Vlog and LMVD
  have one row per second). A preset counts in rows: ``crop_min_len`` (500/400), ``max_len`` (596)
  and JAMFN's fixed 596-step window (its model default). On features at another rate those numbers
  mean other durations, so :class:`~depdet.pipeline.training.runs.Trainer` refuses such a dataset
  (``ConfigError``) unless ``rescale_rows=True`` (CLI ``--rescale-rows``) asks it to multiply those
  row counts by ``data fps / preset fps`` (see :func:`~depdet.pipeline.training.config.rows_for_fps`).

No preset here quotes a result; results come from a run folder (``metrics.json``), which records
the preset, its note, the seeds and the split.
"""

from __future__ import annotations

from copy import deepcopy

from depdet.errors import ConfigError
from depdet.pipeline.data.batching import DEFAULT_MAX_TOKENS

#: The optimisers and schedulers a recipe may name (``TrainConfig`` checks them, the CLI offers them).
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "cosine")

#: keys of a preset that describe it and are not TrainConfig fields
META_KEYS = ("kind", "sources", "note", "changes", "variant_of", "dataset", "fps")

# the public loaders (models.md §1.3): features cast to float32, nothing else
_RAW = {
    "landmark_zscore": False,
    "standardize": False,
    "max_len": None,
    "crop_aug": False,
    "crop_min_len": 500,
    "crop_attempts": 5,
}

_SEEDS_NOTE = (
    "seeds 1, 2, 3 (depdet's: the reference runs are unseeded; the seed fixes model initialisation, "
    "shuffling, crops and dropout, so depdet's random streams differ from any reference run)"
)
_EVAL_NOTE = (
    "valid/test logits are scored in length-sorted batches of 16 (depdet's scorer); with the public "
    "code's padding leak (padding='original') a logit depends on the padding of its batch, so valid/test "
    "logits differ slightly from the reference's in-order batches"
)
_CROP_NOTE = (
    "crops are drawn from the run's seed (the reference's are unseeded), same rule: 5 tries of "
    "int(U(0,1)*T) rows, kept if >= {n}, start in [1, T-len]"
)

#: The references' batches (every paper preset): one random permutation per epoch cut into batches of the
#: recipe's size, each batch in one forward (TrainConfig.bucketing / max_tokens; 0 = never split).
_REFERENCE_BATCHES = {"bucketing": False, "max_tokens": 0}

_DEPMAMBA_SRC = [
    "Jiaxin-Ye/DepMamba@6e96fd2: main.py, config/config.yaml, README.md, datasets/{dvlog,lmvd}.py",
    "models.md §1.3 (loader), §2.1 (model), §3 (protocol)",
]


def _depmamba(dataset: str, d_state: int, crop: int) -> dict:
    return dict(
        kind="paper",
        model="depmamba",
        model_config={"d_state": d_state, "padding": "original"},
        dataset=dataset,
        fps=1.0,
        preprocess={**_RAW, "crop_aug": True, "crop_min_len": crop},
        optimizer="adam",
        lr=1e-4,
        weight_decay=0.0,
        batch_size=16,
        epochs=120,
        scheduler="none",
        patience=None,
        select="depmamba",
        amp=False,
        seeds=[1, 2, 3],
        sources=_DEPMAMBA_SRC,
        **_REFERENCE_BATCHES,
        note=(
            f"DepMamba public code ({dataset}): features as loaded (float32, no standardisation, no landmark "
            f"z-score), whole sequences, batches zero-padded to their longest; padding='original' = the public "
            f"model's padding behaviour (no masking inside blocks, backward scan over the flipped padded tensor, "
            f"plain BatchNorm) and its mask rule (concat row sum != 0, used only for the mean pooling); d_state "
            f"{d_state}; Adam lr 1e-4 (the README's runs; config.yaml says 8e-5), no weight decay, batch 16, "
            f"120 epochs, no scheduler (config's 'cos' is unused), float32, BCE on one logit, checkpoint = the "
            f"epoch whose mean(acc,P,R,F1) on valid is strictly better than all before. Remaining differences: "
            f"{_CROP_NOTE.format(n=crop)}; {_SEEDS_NOTE}; {_EVAL_NOTE}; invalid rows (from the store's validity) "
            f"are set to 0 on loading (the released files already hold 0 there)."
        ),
    )


def _dynmultidep(dataset: str, cfg: dict, crop: int) -> dict:
    return dict(
        kind="paper",
        model="dynmultidep",
        model_config={**cfg, "padding": "original"},
        dataset=dataset,
        fps=1.0,
        preprocess={**_RAW, "crop_aug": True, "crop_min_len": crop},
        optimizer="adam",
        lr=5e-4,
        weight_decay=0.0,
        batch_size=32,
        epochs=120,
        scheduler="none",
        patience=None,
        select="depmamba",
        amp=False,
        seeds=[1, 2, 3],
        **_REFERENCE_BATCHES,
        sources=["3166074787/DynMultiDep@5fd29e3: config/config.yaml, datasets/*", "models.md §2.2, §3"],
        note=(
            "DynMultiDep public config: Adam 5e-4, batch 32, 120 epochs, no scheduler, DepMamba's loader (float32, "
            "no standardisation, crops) and selection, float32, padding='original' (its Mamba layer is DepMamba's, "
            "which leaks padding). Remaining differences: the public code cannot run as committed and lacks the "
            "paper's Transformer experts and routing (models.md §2.2), so the model is depdet's reading of the "
            f"paper (see `depdet models dynmultidep`); {_CROP_NOTE.format(n=crop)}; {_SEEDS_NOTE}; {_EVAL_NOTE}."
        ),
    )


#: What padding='fixed' does, per model of a *-fixed preset (tests/test_claims.py shows each part).
_FIXED_PADDING = {
    "depmamba": (
        "padding='fixed': batch padding enters no conv, scan or BatchNorm statistic (in eval mode a clip in "
        "a padded batch gets its logit alone; tests/test_depmamba_parity.py checks this against the official "
        "code); the values at a modality's invalid rows (e.g. no face) never reach the output: zeroed before "
        "every conv, left out of that modality's BatchNorm statistics, passed over unchanged by its scans. "
        "Such rows are not cut out: convs see zeros there, and a row where another modality is valid stays in "
        "the fused stream (the missing modality's channels as zeros, counted in the EnSSM BatchNorm "
        "statistics); so on a clip with missing faces the logit differs from the public model's and from "
        "that of the clip with those rows removed"
    ),
    "dynmultidep": (
        "padding='fixed': batch padding enters no conv, scan or attention (a clip in a padded batch gets "
        "its logit alone); the values at a modality's invalid rows (e.g. no face) never reach the output: "
        "zeroed before the Mamba expert's conv, passed over unchanged by its scans, masked as attention "
        "keys, left out of that modality's pooling. Such rows are not cut out (a conv or attention window "
        "that spans them sees zeros or nothing there), so the logit is not that of the clip with those "
        "rows removed"
    ),
}
#: What depdet's length buckets change, per model of a *-fixed preset.
_FIXED_BUCKETS = {
    "depmamba": "with padding='fixed' the padding no longer changes a clip's logits, but its BatchNorm batch "
    "statistics (training) still come from its partners",
    "dynmultidep": "with padding='fixed' and no BatchNorm a clip's logits do not depend on its partners; the gradient "
    "steps do (other batches)",
}

#: What depdet's micro-batches change, per model of a *-fixed preset.
_FIXED_MICRO = {
    "depmamba": "BatchNorm normalises over, and updates its running statistics once per, micro-batch",
    "dynmultidep": "with padding='fixed' and no BatchNorm the step equals the whole batch's to float rounding",
}


def _fixed(base: dict, name: str) -> dict:
    """depdet's variant of a paper preset: padding fix, training-fold standardisation, landmark z-score, AMP."""
    p = deepcopy(base)
    p.update(kind="depdet", variant_of=name, amp=True, bucketing=True, max_tokens=DEFAULT_MAX_TOKENS)
    p["model_config"]["padding"] = "fixed"
    p["preprocess"].update(standardize=True, landmark_zscore=True)
    p["changes"] = [
        _FIXED_PADDING[base["model"]],
        "pooling mask = the union of the per-modality validity masks (not concat row sum != 0)",
        "standardize=True: per-column z-score with training-fold statistics (valid rows only), stored in the checkpoint",
        "landmark_zscore=True: per-row z-score of the 136 landmark columns (idempotent on released D-Vlog/LMVD)",
        "amp=True: float16 autocast + GradScaler on CUDA (CPU stays float32)",
        (
            "bucketing=True: batches from seeded length buckets (every item once per epoch, the same batch size) instead "
            "of the references' random batches: far less padding, but a clip's partners are now clips of similar "
            "length; " + _FIXED_BUCKETS[base["model"]]
        ),
        (
            f"max_tokens={DEFAULT_MAX_TOKENS}: a batch over {DEFAULT_MAX_TOKENS:,} padded rows runs as micro-batches with "
            "gradient accumulation (the optimiser sees the whole batch's mean loss); bounds memory; "
            + _FIXED_MICRO[base["model"]]
        ),
    ]
    p["note"] = (
        f"depdet's variant of {name} (not the paper's recipe): the changes listed in 'changes'; everything "
        f"else as {name}, whose note reads: " + base["note"]
    )
    return p


_ALLENYOLK = dict(
    kind="paper",
    optimizer="adam",
    lr=1e-4,
    weight_decay=0.0,
    batch_size=8,
    epochs=300,
    scheduler="cosine",
    patience=None,
    select="acc",
    amp=False,
    seeds=[1, 2, 3],
    preprocess=dict(_RAW),
    **_REFERENCE_BATCHES,
    sources=[
        "AllenYolk/depression-detection@34d94ab: main.py, config.yaml, models/{transformer,cnn}.py",
        "models.md §2.4(a), §2.5, §3",
    ],
)

PRESETS: dict[str, dict] = {
    "depmamba-dvlog": _depmamba("dvlog", 12, 500),
    "depmamba-lmvd": _depmamba("lmvd", 16, 400),
    "dynmultidep-dvlog": _dynmultidep("dvlog", {}, 500),
    "dynmultidep-lmvd": _dynmultidep("lmvd", {"d_state": 16}, 400),
    "detector-dvlog": dict(
        model="detector",
        model_config={"use_masks": False},
        dataset="dvlog",
        fps=1.0,
        **deepcopy(_ALLENYOLK),
        note=(
            "AllenYolk's D-Vlog Depression Detector re-implementation (no official code exists): Adam 1e-4, batch 8, "
            "300 epochs, cosine (T_max=epochs//5, eta_min=lr/20) per epoch, checkpoint = best valid accuracy "
            "(strictly better), no augmentation, use_masks=False (its model uses no padding mask). Remaining "
            "differences: features as loaded without normalisation and float32 precision are depdet's reading "
            f"(models.md records neither for this repository); {_SEEDS_NOTE}; {_EVAL_NOTE.replace('padding=' + chr(39) + 'original' + chr(39), 'use_masks=False')}."
        ),
    ),
    "tamfn-dvlog": dict(
        model="tamfn",
        model_config={"use_masks": False},
        dataset="dvlog",
        fps=1.0,
        **deepcopy(_ALLENYOLK),
        note=(
            "AllenYolk's TAMFN re-implementation recipe (the official TAMFN code is not public): Adam 1e-4, batch 8, "
            "300 epochs, cosine (T_max=epochs//5, eta_min=lr/20) per epoch, checkpoint = best valid accuracy "
            "(strictly better), no augmentation, use_masks=False (every position treated as valid, as the "
            "re-implementation: padding enters its BatchNorm statistics, global means and LSTMs). Remaining "
            "differences: depdet's tamfn follows the re-implementation as models.md §2.5 describes it, not the "
            "TAMFN paper (whose text was not checked); features as loaded without normalisation and float32 are "
            f"depdet's reading; {_SEEDS_NOTE}; "
            f"{_EVAL_NOTE.replace('padding=' + chr(39) + 'original' + chr(39), 'use_masks=False')}."
        ),
    ),
    "jamfn-dvlog": dict(
        kind="paper",
        model="jamfn",
        model_config={"conv_act": "none"},
        dataset="dvlog",
        fps=1.0,
        preprocess=dict(_RAW),
        optimizer="adam",
        lr=1e-4,
        weight_decay=5e-4,
        batch_size=32,
        epochs=30,
        scheduler="none",
        patience=4,
        select="loss",
        amp=False,
        seeds=[1, 2, 3],
        **_REFERENCE_BATCHES,
        sources=["Zhou et al., Interspeech 2023, §3 (Eqs. 1-14) and §4.2 (papers/jamfn-paper.txt); no public code"],
        note=(
            "JAMFN paper §4.2: Adam (torch's, L2 weight decay) with batch 32, 30 epochs, lr 1e-4, weight decay 5e-4, "
            "eps 1e-8 (torch's default), early stopping with patience 4, cross-entropy loss (the model's default "
            "head='ce2': two class logits), weighted P/R/F1 for testing (metrics.json reports weighted_* beside "
            "the binary ones); the model as §3 writes it (see `depdet models jamfn`): Eqs. 12-14 "
            "(fusion='elementwise', head='ce2') and no activation after the k=1/3/5 convolutions "
            "(conv_act='none': Eq. 6 names none; the model's own default adds a ReLU there, depdet's choice). "
            "Remaining differences "
            "(the paper does not say): early stopping and the kept checkpoint use the valid cross-entropy "
            "(select='loss', depdet's choice); no scheduler, no augmentation, features as loaded (no "
            f"normalisation), float32 and the fixed window L=596 (D-Vlog's padding length) are depdet's choices; "
            f"{_SEEDS_NOTE}."
        ),
    ),
    "dvlog-replication": dict(
        kind="paper",
        model="detector",
        model_config={},
        dataset="dvlog",
        fps=1.0,
        optimizer="adam",
        lr=2e-4,
        weight_decay=0.0,
        batch_size=32,
        epochs=50,
        scheduler="none",
        patience=None,
        select="loss",
        amp=False,
        seeds=[0, 1, 42, 1123, 3407],
        preprocess={**_RAW, "max_len": 596},
        **_REFERENCE_BATCHES,
        sources=[
            "StanMey/Master_thesis_DVlog@1921636: DVlog/train.py, model_configs/replication_study/*.cfg",
            "models.md §2.4(b), §3",
        ],
        note=(
            "StanMey/Master_thesis_DVlog replication protocol: Adam 2e-4, batch 32, 50 epochs, lowest valid loss, "
            "seeds 0/1/42/1123/3407, sequences capped at 596 rows. Remaining differences: the model is depdet's "
            "detector (AllenYolk's architecture, §2.4a), not the thesis's (§2.4b); the cap is a random window in "
            "training and the first 596 rows in evaluation (the thesis pads/truncates to 596); its softmax+CE "
            "loss (a double softmax) is not copied (BCE on one logit); features as loaded and float32 are "
            "depdet's reading."
        ),
    ),
}
#: Every paper preset's batches (TrainConfig.bucketing, .max_tokens), and what the other settings would change.
_ORDER_NOTE = (
    "Batches as the references: bucketing=False, max_tokens=0 (one random permutation per epoch cut into "
    "batches of the size above, each batch in one forward). Changing them is not the paper's run: "
    "--bucketing (depdet's seeded length buckets) changes which clips share a batch, and so each clip's "
    "logits wherever padding leaks (padding='original', use_masks=False) and the BatchNorm batch "
    "statistics of models that have them; --max-tokens N runs a batch over N padded rows as "
    "micro-batches (BatchNorm statistics per micro-batch; with leaking padding each micro-batch pads to its "
    "own longest clip). Memory grows with a batch's padded rows "
    "(items x longest)."
)
for _p in PRESETS.values():
    _p["note"] += " " + _ORDER_NOTE
PRESETS["depmamba-dvlog-fixed"] = _fixed(PRESETS["depmamba-dvlog"], "depmamba-dvlog")
PRESETS["depmamba-lmvd-fixed"] = _fixed(PRESETS["depmamba-lmvd"], "depmamba-lmvd")
PRESETS["dynmultidep-dvlog-fixed"] = _fixed(PRESETS["dynmultidep-dvlog"], "dynmultidep-dvlog")
PRESETS["dynmultidep-lmvd-fixed"] = _fixed(PRESETS["dynmultidep-lmvd"], "dynmultidep-lmvd")


def list_presets() -> list[str]:
    """Names of all presets."""
    return sorted(PRESETS)


def get_preset(name: str) -> dict:
    """A deep copy of preset ``name``; ConfigError naming the choices if unknown."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", hint=f"choose from {', '.join(list_presets())}")
    return deepcopy(PRESETS[name])


def preset_note(name: str | None) -> str | None:
    """The note of preset ``name`` (None without a preset)."""
    return None if not name else get_preset(name)["note"]
