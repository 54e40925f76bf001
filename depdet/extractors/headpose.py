"""Head pose from 2-D landmarks: OpenCV ``solvePnP`` against a generic 3-D face (6 columns).

For each frame with valid landmarks, a rigid generic face model (depdet's own approximate
anthropometric coordinates, millimetres, for 10 stable points: nose tip, subnasale, chin, outer and
inner eye corners, mouth corners, upper lip) is fitted to the matching dlib points with
``cv2.solvePnP(..., SOLVEPNP_ITERATIVE)``, started from a frontal pose at the distance implied
by the eye-corner span. The camera is a pinhole guess from the frame size:
focal length = frame width (pixels), principal point = image centre, no lens distortion.

Model axes match OpenCV's camera axes for a face looking straight at the camera: x to the image
right, y down, z away from the camera; the origin is the nose tip. Outputs per row:

- ``yaw``, ``pitch``, ``roll`` in degrees (rotations about the camera y, x and z axes, from
  ``cv2.RQDecomp3x3`` of the model-to-camera rotation; 0, 0, 0 = facing the camera upright);
- ``tx``, ``ty``, ``tz``: nose-tip position in camera coordinates, in model millimetres (the scale
  is only as right as the generic face and the focal-length guess).

Rows whose landmarks are invalid (no face) or where the fit fails are zeros with ``valid=False``.
This is a coarse, calibration-free estimate, not OpenFace's CLNF pose.
"""

from __future__ import annotations

import numpy as np

from depdet.errors import ExtractionError
from depdet.extractors.base import Extractor, StreamFeatures

#: dlib/iBUG 68-point index -> generic 3-D position (mm; x right, y down, z away from the camera).
#: Rounded adult averages in the spirit of Farkas' facial anthropometry: outer eye corners ~92 mm
#: apart and ~35 mm above / ~38 mm behind the nose tip; mouth ~50 mm wide, ~30 mm below the nose
#: tip; chin (menton) ~77 mm below it. A generic face: expect biases of several degrees per person.
FACE_MODEL_3D = {
    30: (0.0, 0.0, 0.0),  # nose tip
    33: (0.0, 8.0, 16.0),  # subnasale
    8: (0.0, 77.0, 28.0),  # chin (menton)
    36: (-46.0, -35.0, 38.0),  # outer corner of the eye on the image left
    39: (-16.0, -33.0, 30.0),  # inner corner, image left
    42: (16.0, -33.0, 30.0),  # inner corner, image right
    45: (46.0, -35.0, 38.0),  # outer corner, image right
    48: (-25.0, 30.0, 30.0),  # mouth corner, image left
    54: (25.0, 30.0, 30.0),  # mouth corner, image right
    51: (0.0, 20.0, 18.0),  # upper-lip top
}

COLUMNS = ("yaw", "pitch", "roll", "tx", "ty", "tz")


def camera_matrix(width: int, height: int) -> np.ndarray:
    """Pinhole intrinsics: focal = width, principal point = image centre."""
    f = float(width)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def solve_pose(points_2d: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """Pose of one face from its (68, 2) landmarks: [yaw, pitch, roll, tx, ty, tz], or None if it fails."""
    import cv2

    idx = list(FACE_MODEL_3D)
    obj = np.array([FACE_MODEL_3D[i] for i in idx], np.float64)
    img = np.asarray(points_2d, np.float64)[idx]
    K = camera_matrix(width, height)
    # Start Levenberg-Marquardt from a frontal face at the distance implied by the eye-corner span:
    # from OpenCV's default DLT start, ITERATIVE often lands on a mirrored solution behind the camera.
    span_px = float(np.hypot(*(img[idx.index(45)] - img[idx.index(36)])))
    span_mm = FACE_MODEL_3D[45][0] - FACE_MODEL_3D[36][0]
    if not span_px > 1.0:
        return None
    tz = K[0, 0] * span_mm / span_px
    nose = img[idx.index(30)]
    rvec0 = np.zeros((3, 1))
    tvec0 = np.array([[(nose[0] - K[0, 2]) * tz / K[0, 0]], [(nose[1] - K[1, 2]) * tz / K[1, 1]], [tz]])
    ok, rvec, tvec = cv2.solvePnP(
        obj, img, K, np.zeros(4), rvec0, tvec0, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
    )
    if not ok or not np.all(np.isfinite(rvec)) or not np.all(np.isfinite(tvec)) or tvec[2, 0] <= 0:
        return None
    R, _ = cv2.Rodrigues(rvec)
    angles = cv2.RQDecomp3x3(R)[0]  # degrees about x, y, z
    pitch, yaw, roll = (float(a) for a in angles)
    return np.array([yaw, pitch, roll, *tvec.reshape(3)], np.float64)


class Headpose(Extractor):
    """Head pose (yaw, pitch, roll in degrees; tx, ty, tz) from raw landmark rows."""

    name = "headpose"
    modality = "visual"
    dim = 6
    version = "1"
    columns = COLUMNS

    def extract(self, raw_landmarks: StreamFeatures, width: int, height: int) -> StreamFeatures:
        """Fit the generic face to every valid row.

        Args:
            raw_landmarks: output of :class:`~depdet.extractors.landmarks.Landmarks` (RAW pixels,
                not z-scored).
            width: frame width in pixels.
            height: frame height in pixels.

        Returns:
            StreamFeatures (T, 6); invalid where landmarks are invalid or the fit fails.

        Raises:
            ExtractionError: landmark rows are not 136 wide, or the frame size is unknown.
        """
        vals = np.asarray(raw_landmarks.values)
        if vals.ndim != 2 or vals.shape[1] != 136:
            raise ExtractionError(f"head pose needs (T, 136) raw landmarks, got {vals.shape}")
        if not (width and height):
            raise ExtractionError(
                "head pose needs the frame size", hint="pass width and height from the landmarks info"
            )
        T = len(vals)
        out = np.zeros((T, 6), np.float32)
        valid = np.zeros(T, bool)
        for t in np.flatnonzero(raw_landmarks.valid):
            pts = np.stack([vals[t, :68], vals[t, 68:]], axis=1)
            pose = solve_pose(pts, int(width), int(height))
            if pose is not None:
                out[t], valid[t] = pose, True
        info = {"columns": list(COLUMNS), "pose_ratio": float(valid.mean()) if T else 0.0}
        return StreamFeatures(out, valid, raw_landmarks.fps, info)

    def describe(self) -> dict:
        """Provenance: solver, model points, camera guess."""
        return {
            **super().describe(),
            "backend": "opencv solvePnP SOLVEPNP_ITERATIVE",
            "model_points": sorted(FACE_MODEL_3D),
            "camera": "focal=width, centre=image centre",
            "angles": "degrees, RQDecomp3x3 (pitch x, yaw y, roll z)",
        }
