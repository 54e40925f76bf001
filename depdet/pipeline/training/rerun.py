"""Re-running a run from its own folder (``depdet train --config RUN/config.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path

from depdet.errors import ConfigError, DataError
from depdet.pipeline.training.config import TrainConfig
from depdet.pipeline.training.presets import preset_note
from depdet.pipeline.training.provenance import data_fingerprint
from depdet.pipeline.training.runs import Trainer


def read_run_config(path: str | Path) -> dict:
    """The recorded ``config.yaml`` / ``config.json`` of a run folder (or the folder itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / ("config.yaml" if (path / "config.yaml").exists() else "config.json")
    if not path.exists():
        raise ConfigError(
            "no run config here", path=path, hint="pass RUN/config.yaml of a folder written by depdet train"
        )
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(text)
        else:
            d = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the same user error
        raise ConfigError(f"cannot read the run config ({e.__class__.__name__}: {e})", path=path) from None
    if not isinstance(d, dict) or "config" not in d or "data" not in d:
        raise ConfigError("not a depdet run config (no 'config'/'data' sections)", path=path)
    d["_path"] = str(path)
    return d


def rerun(
    config_path: str | Path,
    run_dir: str | Path | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    command: list[str] | None = None,
    console=None,
) -> tuple[dict, Path]:
    """Re-run a run from its own folder: the recorded TrainConfig on the recorded data (same path,
    layout, labels file and ``skip_missing``), with the recorded torch thread count unless ``threads``
    is given. The data must have the recorded fingerprint (else a DataError). Returns the summary
    and the new run folder (default: ``<RUN>-rerun`` beside the original).

    Training is deterministic per seed on CPU, so on CPU the new ``metrics.json`` metrics equal the
    recorded ones (tested by ``tests/test_recipes.py``).
    """
    from depdet.pipeline.data.datasets import load_dataset

    d = read_run_config(config_path)
    src = Path(d["_path"]).parent
    cfg_d = dict(d["config"])
    if device is not None:
        cfg_d["device"] = device
    cfg = TrainConfig(**cfg_d)
    load = dict(d.get("load") or {})
    env_path = src / "env.json"
    from depdet import threads as thread_policy

    thread_policy.configure(threads)
    if threads is None and env_path.exists():
        thread_policy.follow_recorded(
            json.loads(env_path.read_text()).get("torch_threads"),
            "the recorded run's count (env.json), for the same results",
        )
    ds = load_dataset(
        d["data"]["path"],
        load.get("layout", d["data"].get("layout", "auto")),
        labels=load.get("labels"),
        skip_missing=bool(load.get("skip_missing", False)),
        skip_invalid=bool(load.get("skip_invalid", False)),
        group_by=load.get("group_by") or "group",
    )
    data_json = src / "data.json"
    if data_json.exists():
        want = (json.loads(data_json.read_text()).get("fingerprint") or {}).get("sha256")
        got = data_fingerprint(ds)["sha256"]
        if want and want != got:
            raise DataError(
                "the data differ from the recorded run's (data fingerprint changed)",
                path=ds.root,
                hint=f"compare {data_json} 'fingerprint' with the folder's records",
            )
    rdir = Path(run_dir) if run_dir is not None else src.parent / f"{src.name}-rerun"
    log = (lambda s: console.print(s, highlight=False)) if console is not None else None
    if log and cfg.preset:
        log(f"re-running {src} into {rdir}; preset {cfg.preset}: {preset_note(cfg.preset)}")
    summary = Trainer(
        ds, cfg, rdir, log=log, command=command, load_options={k: v for k, v in load.items() if k != "layout"}
    ).run()
    return summary, rdir
