"""Extraction speed and memory on a 10-minute 640x480 25 fps H.264 vlog built from the GRID clips.

Prints, per stage, the realtime factor (seconds of video per wall-clock second) and the peak
resident memory of the process that ran it (each stage runs in its own fresh process, so the
peaks do not mix). The target on a 2-core machine is D-Vlog features end to end
(eGeMAPS + landmarks at 1 fps) at >= 20x realtime.

    python bench/extract.py [--minutes 10] [--stages all]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ["decode_audio", "sample_frames_1fps", "egemaps", "landmarks_1fps", "landmarks_5fps", "vggish",
          "end_to_end_dvlog_1fps", "end_to_end_cli_dvlog_1fps"]


def run_stage(stage: str, video: Path) -> dict:

    from depdet.pipeline import media as decode

    duration = decode.probe(video).duration
    t0 = time.perf_counter()
    extra = {}
    if stage == "decode_audio":
        a = decode.load_audio(video, 16000)
        extra["samples"] = int(a.size)
    elif stage.startswith("sample_frames"):
        extra["frames"] = sum(1 for _ in decode.iter_frames(video, 1.0))
    elif stage == "egemaps":
        from depdet.extractors import get_extractor

        a = decode.load_audio(video, 16000)
        t0 = time.perf_counter()  # extractor only
        f = get_extractor("egemaps").extract(a, 16000, 1.0)
        extra["rows"] = len(f)
    elif stage.startswith("landmarks"):
        from depdet.extractors import get_extractor

        fps = 5.0 if stage.endswith("5fps") else 1.0
        f = get_extractor("landmarks").extract(decode.iter_frames(video, fps))
        extra.update(rows=len(f), face_ratio=round(float(f.valid.mean()), 4))
    elif stage == "vggish":
        import torch

        from depdet import weights as W
        from depdet.extractors import vggish as vg
        from depdet.fileio import sha256_file

        # Speed does not depend on the weight values: time the network on a seeded random init
        # saved with the official key names (the official file cannot be downloaded here).
        torch.manual_seed(0)
        tmp = Path(tempfile.mkdtemp()) / W.get_entry("vggish").filename
        torch.save(vg._build_net().state_dict(), tmp)
        W.with_override("vggish", sha256=sha256_file(tmp), sha256_prefix="")
        a = decode.load_audio(video, 16000)
        ex = vg.Vggish(weights_path=str(tmp), postprocess=False)
        t0 = time.perf_counter()
        f = ex.extract(a, 16000, 1.0)
        extra.update(rows=len(f), note="random weights (official file not downloadable here)")
    elif stage == "end_to_end_dvlog_1fps":
        from depdet.pipeline.features.extract import extract_clip
        from depdet.pipeline.features.spec import DVLOG

        c = extract_clip(video, DVLOG)
        extra.update(T=c.T, face_ratio=round(c.info["face_ratio"], 4))
    elif stage == "end_to_end_cli_dvlog_1fps":
        out = Path(tempfile.mkdtemp()) / "features"
        r = subprocess.run([sys.executable, "-m", "depdet", "extract", str(video), "-o", str(out)],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr[-2000:])
        rows = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]
        extra.update(T=rows[0]["T"], note="includes Python/torch start-up, SHA-256 and writing")
    else:
        raise SystemExit(f"unknown stage {stage}")
    wall = time.perf_counter() - t0
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"stage": stage, "wall_s": round(wall, 2), "realtime_x": round(duration / wall, 1),
            "peak_rss_mb": round(max(peak_self, peak_children)), **extra}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--stages", default="all", help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--_stage", help=argparse.SUPPRESS)
    ap.add_argument("--_video", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._stage:
        print(json.dumps(run_stage(args._stage, Path(args._video))))
        return
    from _media import long_vlog

    video = long_vlog(args.minutes)
    stages = STAGES if args.stages == "all" else args.stages.split(",")
    print(f"# depdet extraction benchmark: {video.name} ({args.minutes:g} min, 640x480, 25 fps, H.264/AAC)")
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'stage':<28}{'wall s':>9}{'x realtime':>12}{'peak MB':>9}  details")
    for st in stages:
        r = subprocess.run([sys.executable, __file__, "--_stage", st, "--_video", str(video)], capture_output=True, text=True)
        if r.returncode:
            print(f"{st:<28} FAILED: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        details = {k: v for k, v in d.items() if k not in ("stage", "wall_s", "realtime_x", "peak_rss_mb")}
        print(f"{st:<28}{d['wall_s']:>9}{d['realtime_x']:>12}{d['peak_rss_mb']:>9}  {details}", flush=True)


if __name__ == "__main__":
    main()
