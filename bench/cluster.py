"""Extraction throughput of the executors, measured in one run on the same clips.

Builds ``--clips`` copies (default 8) of a ``--minutes``-long 640x480 25 fps H.264/AAC vlog made of
the GRID clips (bench/_media.py), then extracts them (D-Vlog features: eGeMAPS + landmarks at 1
row/s) into a fresh folder with each executor:

* ``local``: the default process pool (``--workers`` = all cores),
* ``dask local:1`` and ``dask local:2``: ``--cluster local:N`` (cluster start-up included in the wall time),

and prints seconds of video per wall-clock second for each, and the scaling ratios
(local:2 / local:1, and dask local:2 / the local pool at the same core count).

    python bench/cluster.py [--clips 8] [--minutes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--configs", default="local,local:1,local:2", help="comma-separated: local, local:N")
    args = ap.parse_args()

    from _media import long_vlog

    from depdet.pipeline.features.spec import FeatureSpec
    from depdet.pipeline.orchestration.extract_batch import run_extract

    video = long_vlog(args.minutes)
    tmp = Path(tempfile.mkdtemp(prefix="depdet-bench-cluster-"))
    src = tmp / "videos"
    src.mkdir()
    for i in range(args.clips):
        os.link(video, src / f"vlog{i:02d}.mp4") if hasattr(os, "link") else shutil.copy(
            video, src / f"vlog{i:02d}.mp4"
        )
    spec = FeatureSpec(audio=("egemaps",), visual=("landmarks",), fps=1.0)
    cores = os.cpu_count() or 1
    print(
        f"# {args.clips} clips x {args.minutes:g} min (640x480 25 fps H.264/AAC from GRID), D-Vlog features at 1 row/s; "
        f"{platform.processor() or platform.machine()}, {cores} cores, load average {os.getloadavg()[0]:.1f} at start "
        "(other work on the machine lowers the figures)",
        flush=True,
    )
    results = {}
    try:
        for cfg in args.configs.split(","):
            out = tmp / f"out-{cfg.replace(':', '_')}"
            kw = {"cluster": cfg} if cfg.startswith("local:") else {"workers": None}
            t0 = time.perf_counter()
            rep = run_extract([src], out, spec, **kw)
            wall = time.perf_counter() - t0
            if rep.failed:
                raise SystemExit(f"{cfg}: {len(rep.failed)} failed: {rep.failed[0].get('error')}")
            media = rep.media_seconds
            name = "local pool" if cfg == "local" else f"dask {cfg}"
            results[cfg] = {
                "executor": name,
                "workers": cores if cfg == "local" else int(cfg.split(":")[1]),
                "media_s": round(media, 1),
                "wall_s": round(wall, 2),
                "video_s_per_wall_s": round(media / wall, 2),
            }
            results[cfg]["load_avg_1min_after"] = round(os.getloadavg()[0], 1)
            print(json.dumps(results[cfg]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r = {k: v["video_s_per_wall_s"] for k, v in results.items()}
    if "local:1" in r and "local:2" in r:
        print(f"scaling dask local:2 / local:1 = {r['local:2'] / r['local:1']:.2f}x (ideal 2.00x on >= 2 free cores)")
    if "local" in r and "local:2" in r:
        print(f"dask local:2 / local pool ({cores} workers) = {r['local:2'] / r['local']:.2f}")


if __name__ == "__main__":
    main()
