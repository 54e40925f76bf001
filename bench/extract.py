"""Extraction speed: depdet against a naive script, on 10-minute vlogs at 640x480, 1280x720, 1920x1080.

The vlogs (bench/_media.py, cached under .bench/): the GRID clips one after another, resized to the
frame size, H.264 (libx264 veryfast, CRF 23, B-frames) at 25 fps with a keyframe every 2 s (GOP 50),
AAC audio. Per size, all in the same run (the machine may be shared: compare within a run):

- decode: every packet decoded (``iter_frames(..., skip=False)``, depdet before issue 11) against
  decoding only what 1 fps sampling needs (``skip=True``, the default), with a check that both
  yield the same frames (timestamps and pixels);
- depdet, one clip: ``depdet extract VIDEO -o OUT --workers 1`` (D-Vlog features: eGeMAPS +
  dlib landmarks at 1 fps; the default spec), wall time of the whole command (Python start-up,
  model loading, hashing and writing included);
- depdet, a batch of 4 copies of the clip with ``--workers 2``: throughput = 4 x clip seconds /
  wall;
- naive: one process, sequential: PyAV decodes every frame and converts it to RGB (threaded
  decoding), dlib's full-frame HOG detector (no pyramid up-sampling: the faster setting, so the
  comparison favours the naive script) + the 68-point predictor on one frame per second at full
  resolution, then openSMILE eGeMAPSv02 LLDs on the whole 16 kHz track. With ``--naive-minutes M``
  it runs on the first M minutes only and its time after loading the models is extrapolated linearly
  to the clip's length (labelled "extrapolated").

Realtime factor = seconds of video / wall seconds. CPU = user + system seconds of the processes a
step ran (less sensitive than wall time to other load on a shared machine). Targets (depdet issue 11, 2 cores): 720p one clip >= 20x realtime, batch
throughput >= 30x realtime, >= 5x the naive script.

    python bench/extract.py [--minutes 10] [--sizes 480,720,1080] [--naive-minutes M]
    python bench/extract.py --stages all      # the per-stage table on the 640x480 vlog
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZES = {"480": (640, 480), "720": (1280, 720), "1080": (1920, 1080)}
GOP = 50  # a keyframe every 2 s at 25 fps
BATCH = 4
BATCH_WORKERS = 2
TARGETS = {"single_720": 20.0, "batch": 30.0, "vs_naive": 5.0}

STAGES = [
    "decode_audio",
    "sample_frames_1fps",
    "egemaps",
    "landmarks_1fps",
    "landmarks_5fps",
    "vggish",
    "end_to_end_dvlog_1fps",
    "end_to_end_cli_dvlog_1fps",
]


# ----------------------------------------------------------------------------------- steps
def decode_step(video: Path, skip: bool) -> dict:
    """Sample 1 fps with or without frame skipping; a digest of what was yielded."""
    from depdet.pipeline.media.video import iter_frames

    stats: dict = {}
    h = hashlib.sha256()
    n = 0
    t0 = time.perf_counter()
    for fr in iter_frames(video, 1.0, stats=stats, skip=skip):
        h.update(f"{fr.index}:{fr.source_time!r}".encode())
        if fr.image is not None:
            h.update(fr.image.tobytes())
        n += 1
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "rows": n,
        "digest": h.hexdigest(),
        "decoded": stats.get("decoded"),
        "frames": stats.get("frames"),
        "decode": stats.get("decode"),
    }


def naive_step(video: Path, minutes: float | None) -> dict:
    """The naive script (see the module docstring), on the first ``minutes`` (None: all)."""
    import av
    import dlib
    import numpy as np
    import opensmile

    from depdet.weights.lookup import require

    limit = minutes * 60.0 if minutes else math.inf
    t0 = time.perf_counter()
    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(str(require("dlib-shape68")))
    setup = time.perf_counter() - t0
    frames = faces = 0
    next_t = 0.0
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            t = float(f.pts * s.time_base)
            if t >= limit:
                break
            img = f.to_ndarray(format="rgb24")
            frames += 1
            if t + 1e-6 >= next_t:
                next_t += 1.0
                dets = det(img, 0)
                if dets:
                    r = max(dets, key=lambda d: d.width() * d.height())
                    pred(img, r)
                    faces += 1
    chunks = []
    with av.open(str(video)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
        for f in c.decode(audio=0):
            if f.pts is not None and float(f.pts * f.time_base) >= limit:
                break
            f.pts = None
            chunks += [o.to_ndarray().reshape(-1) for o in rs.resample(f)]
    audio = np.concatenate(chunks)
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )
    lld = smile.process_signal(audio, 16000)
    return {
        "wall_s": time.perf_counter() - t0,
        "setup_s": setup,
        "seconds": min(limit, audio.size / 16000),
        "frames": frames,
        "faces": faces,
        "lld_rows": len(lld),
    }


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measured(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time and the CPU seconds (user + system) of its processes."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])}...: {(r.stderr or r.stdout).strip()[-1500:]}")
    return {"wall_s": wall, "cpu_s": _children_cpu() - cpu0, "stdout": r.stdout}


def in_child(kind: str, video: Path, *extra: str) -> dict:
    """Run one step in a fresh process (``--_step``); its JSON result plus its peak memory."""
    m = measured([sys.executable, __file__, "--_step", kind, "--_video", str(video), *extra])
    d = json.loads(m["stdout"].strip().splitlines()[-1])
    d["cpu_s"] = m["cpu_s"]
    return d


def depdet_cli(inputs: Path, out: Path, workers: int) -> dict:
    return measured([sys.executable, "-m", "depdet", "extract", str(inputs), "-o", str(out), "--workers", str(workers)])


# ----------------------------------------------------------------------------------- compare
def compare(minutes: float, sizes: list[str], naive_minutes: float | None) -> None:
    from _media import vlog

    from depdet.pipeline.media.container import probe

    print(f"# depdet extraction vs a naive script: {minutes:g}-min GRID vlogs, H.264 25 fps, keyframe every 2 s, AAC")
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average at start {os.getloadavg()[0]:.1f} (shared machine: "
        "compare within this run)"
    )
    results = {}
    for key in sizes:
        w, h = SIZES[key]
        t = time.perf_counter()
        video = vlog(minutes, w, h, gop=GOP)
        built = time.perf_counter() - t
        dur = probe(video).duration
        print(
            f"\n## {w}x{h}: {video.name}, {dur:.0f} s, {video.stat().st_size / 1e6:.0f} MB"
            + (f" (built in {built:.0f} s)" if built > 1 else " (cached)"),
            flush=True,
        )
        full = in_child("decode_full", video)
        fast = in_child("decode_skip", video)
        same = full["digest"] == fast["digest"] and full["rows"] == fast["rows"]
        print(
            f"decode, 1 fps sampling    every packet {full['wall_s']:6.1f} s ({dur / full['wall_s']:5.0f}x), "
            f"{full['decoded']} frames decoded | skipping {fast['wall_s']:6.1f} s ({dur / fast['wall_s']:5.0f}x), "
            f"{fast['decoded']} decoded ({fast['decode']}) | {full['wall_s'] / fast['wall_s']:.2f}x faster, "
            f"same frames: {'yes' if same else 'NO'}",
            flush=True,
        )
        tmp = Path(tempfile.mkdtemp(prefix="depdet-bench-"))
        try:
            single = depdet_cli(video, tmp / "one", 1)
            batch_dir = tmp / "batch"
            batch_dir.mkdir()
            for i in range(BATCH):
                dst = batch_dir / f"clip{i}{video.suffix}"
                try:
                    os.link(video, dst)
                except OSError:
                    shutil.copy(video, dst)
            batch = depdet_cli(batch_dir, tmp / "many", BATCH_WORKERS)
            rows = [json.loads(line) for line in (tmp / "many" / "manifest.jsonl").read_text().splitlines()]
            assert len(rows) == BATCH and all(r["status"] == "ok" for r in rows), rows
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        x_single = dur / single["wall_s"]
        x_batch = BATCH * dur / batch["wall_s"]
        print(
            f"depdet, one clip          {single['wall_s']:6.1f} s  {x_single:5.1f}x realtime  (--workers 1, "
            f"whole command); CPU {single['cpu_s']:.1f} s",
            flush=True,
        )
        print(
            f"depdet, batch of {BATCH}        {batch['wall_s']:6.1f} s  {x_batch:5.1f}x realtime throughput  "
            f"(--workers {BATCH_WORKERS}); CPU {batch['cpu_s']:.1f} s = {batch['cpu_s'] / BATCH:.1f} s per clip",
            flush=True,
        )
        nm = naive_minutes if (naive_minutes and naive_minutes * 60 < dur) else None
        nv = in_child("naive", video, *(["--_minutes", str(nm)] if nm else []))
        # extrapolated: model loading once, the rest in proportion to the clip's length
        naive_wall = nv["setup_s"] + (nv["wall_s"] - nv["setup_s"]) * (dur / nv["seconds"]) if nm else nv["wall_s"]
        x_naive = dur / naive_wall
        label = f" (EXTRAPOLATED from the first {nm:g} min: {nv['wall_s']:.1f} s)" if nm else ""
        naive_cpu = nv["cpu_s"] * (naive_wall / nv["wall_s"])
        print(
            f"naive script              {naive_wall:6.1f} s  {x_naive:5.1f}x realtime{label}; {nv['faces']} faces "
            f"in {math.ceil(nv['seconds'])} sampled frames; CPU {naive_cpu:.1f} s",
            flush=True,
        )
        print(
            f"depdet / naive            wall: one clip {x_single / x_naive:.1f}x, batch throughput "
            f"{x_batch / x_naive:.1f}x; CPU per clip: {naive_cpu / (batch['cpu_s'] / BATCH):.1f}x less",
            flush=True,
        )
        results[key] = {"x_single": x_single, "x_batch": x_batch, "x_naive": x_naive}
    print("\n## targets (depdet issue 11)")
    if "720" in results:
        r = results["720"]
        print(
            f"720p one clip >= {TARGETS['single_720']:g}x realtime: {r['x_single']:.1f}x "
            f"{'PASS' if r['x_single'] >= TARGETS['single_720'] else 'FAIL'}"
        )
    for key, r in results.items():
        print(
            f"{key}p batch throughput >= {TARGETS['batch']:g}x: {r['x_batch']:.1f}x "
            f"{'PASS' if r['x_batch'] >= TARGETS['batch'] else 'FAIL'}; >= {TARGETS['vs_naive']:g}x naive: "
            f"{r['x_batch'] / r['x_naive']:.1f}x {'PASS' if r['x_batch'] / r['x_naive'] >= TARGETS['vs_naive'] else 'FAIL'}"
        )


# ----------------------------------------------------------------------------------- stages
def run_stage(stage: str, video: Path) -> dict:
    """One stage of the per-stage table (``--stages``) on the 640x480 vlog."""
    from depdet.pipeline.media.audio import load_audio
    from depdet.pipeline.media.container import probe
    from depdet.pipeline.media.video import iter_frames

    duration = probe(video).duration
    t0 = time.perf_counter()
    extra = {}
    if stage == "decode_audio":
        a = load_audio(video, 16000)
        extra["samples"] = int(a.size)
    elif stage.startswith("sample_frames"):
        extra["frames"] = sum(1 for _ in iter_frames(video, 1.0))
    elif stage == "egemaps":
        from depdet.extractors import get_extractor

        a = load_audio(video, 16000)
        t0 = time.perf_counter()  # extractor only
        f = get_extractor("egemaps").extract(a, 16000, 1.0)
        extra["rows"] = len(f)
    elif stage.startswith("landmarks"):
        from depdet.extractors import get_extractor

        fps = 5.0 if stage.endswith("5fps") else 1.0
        f = get_extractor("landmarks").extract(iter_frames(video, fps))
        extra.update(rows=len(f), face_ratio=round(float(f.valid.mean()), 4))
    elif stage == "vggish":
        import torch

        from depdet.extractors import vggish as vg
        from depdet.fileio import sha256_file
        from depdet.weights import registry as W

        # Speed does not depend on the weight values: time the network on a seeded random init
        # saved with the official key names (the official file cannot be downloaded here).
        torch.manual_seed(0)
        tmp = Path(tempfile.mkdtemp()) / W.get_entry("vggish").filename
        torch.save(vg._build_net().state_dict(), tmp)
        W.with_override("vggish", sha256=sha256_file(tmp), sha256_prefix="")
        a = load_audio(video, 16000)
        ex = vg.Vggish(weights_path=str(tmp), postprocess=False)
        t0 = time.perf_counter()
        f = ex.extract(a, 16000, 1.0)
        extra.update(rows=len(f), note="random weights (official file not downloadable here)")
    elif stage == "end_to_end_dvlog_1fps":
        from depdet.pipeline.features.clip import extract_clip
        from depdet.pipeline.features.spec import DVLOG

        c = extract_clip(video, DVLOG)
        extra.update(T=c.T, face_ratio=round(c.info["face_ratio"], 4))
    elif stage == "end_to_end_cli_dvlog_1fps":
        out = Path(tempfile.mkdtemp()) / "features"
        r = subprocess.run(
            [sys.executable, "-m", "depdet", "extract", str(video), "-o", str(out)], capture_output=True, text=True
        )
        if r.returncode:
            raise RuntimeError(r.stderr[-2000:])
        rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        extra.update(T=rows[0]["T"], note="includes Python/torch start-up, SHA-256 and writing")
    else:
        raise SystemExit(f"unknown stage {stage}")
    wall = time.perf_counter() - t0
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "stage": stage,
        "wall_s": round(wall, 2),
        "realtime_x": round(duration / wall, 1),
        "peak_rss_mb": round(max(peak_self, peak_children)),
        **extra,
    }


def stages_table(minutes: float, stages: list[str]) -> None:
    from _media import long_vlog

    video = long_vlog(minutes)
    print(f"# depdet extraction stages: {video.name} ({minutes:g} min, 640x480, 25 fps, H.264/AAC)")
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"{'stage':<28}{'wall s':>9}{'x realtime':>12}{'peak MB':>9}  details")
    for st in stages:
        r = subprocess.run(
            [sys.executable, __file__, "--_stage", st, "--_video", str(video)], capture_output=True, text=True
        )
        if r.returncode:
            print(f"{st:<28} FAILED: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        details = {k: v for k, v in d.items() if k not in ("stage", "wall_s", "realtime_x", "peak_rss_mb")}
        print(f"{st:<28}{d['wall_s']:>9}{d['realtime_x']:>12}{d['peak_rss_mb']:>9}  {details}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="vlog length (default 10)")
    ap.add_argument("--sizes", default="480,720,1080", help="comma-separated subset of 480,720,1080")
    ap.add_argument(
        "--naive-minutes",
        type=float,
        default=None,
        help="time the naive script on this prefix only and extrapolate (labelled as such)",
    )
    ap.add_argument("--stages", default=None, help=f"per-stage table instead: 'all' or a subset of {','.join(STAGES)}")
    ap.add_argument("--_stage", help=argparse.SUPPRESS)
    ap.add_argument("--_step", help=argparse.SUPPRESS)
    ap.add_argument("--_video", help=argparse.SUPPRESS)
    ap.add_argument("--_minutes", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._stage:
        print(json.dumps(run_stage(args._stage, Path(args._video))))
    elif args._step:
        video = Path(args._video)
        d = (
            decode_step(video, skip=args._step == "decode_skip")
            if args._step.startswith("decode")
            else naive_step(video, args._minutes)
        )
        print(json.dumps(d))
    elif args.stages:
        stages_table(args.minutes, STAGES if args.stages == "all" else args.stages.split(","))
    else:
        sizes = [s.strip().rstrip("p") for s in args.sizes.split(",") if s.strip()]
        bad = [s for s in sizes if s not in SIZES]
        if bad:
            raise SystemExit(f"unknown size(s) {bad}: choose from {','.join(SIZES)}")
        compare(args.minutes, sizes, args.naive_minutes)


if __name__ == "__main__":
    main()
