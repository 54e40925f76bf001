"""VGGish audio embeddings (128-d), the LMVD audio features, with depdet's own front end and network.

Pipeline (constants from Hershey et al. 2017 / Google's AudioSet VGGish release):

1. Front end (numpy): 16 kHz mono; STFT magnitude with a 25 ms periodic Hann window (400 samples),
   10 ms hop (160), FFT size 512; 64 HTK-mel bands between 125 and 7500 Hz (triangles linear in
   mel, DC bin excluded); ``log(mel + 0.01)``; examples are 96 frames x 64 bands (0.96 s).
2. Network (torch): VGG conv stack 64-M-128-M-256-256-M-512-512-M (3x3 convs, ReLU, 2x2 max-pool),
   flattened in (time, freq, channel) order as TensorFlow does, then FC 12288->4096->4096->128.
   Parameter names equal the PyTorch port's (``features.N.*``, ``embeddings.N.*``) so its checkpoint
   ``vggish-10086976.pth`` (harritaylor/torchvggish release v0.1) loads directly.
3. Post-processing (optional, on by default, as the released AudioSet embeddings): PCA with the
   official eigenvectors and means, clip to [-2, 2], quantise to 0..255 (8-bit levels). The
   quantisation follows Google's reference (``vggish_postprocess.py``: ``astype(np.uint8)``, which
   *truncates*) by default; ``quantize="round"`` is the PyTorch port's ``torch.round`` instead
   (torchvggish), which puts about half the values one level higher. Which one LMVD used is not
   documented.

Final ReLU. The PyTorch port applies a ReLU after the 128-d layer, as Google's original 2017 TF
graph did (the one used for the released AudioSet embeddings); Google's current TF code returns the
pre-activation (see harritaylor/torchvggish#24, tensorflow/models#9772). depdet follows the port by
default (``final_relu=True``) and offers ``final_relu=False`` for the pre-activation variant. Which
one LMVD used is not documented.

Timeline. Row ``k`` is the embedding of the 0.96 s example *starting* at ``k / fps`` (hop
``1 / fps``), so rows land on depdet's shared timeline. LMVD's native hop is 0.96 s (non-overlapping
examples, ``EXAMPLE_HOP_SECONDS = 0.96``); at ``fps = 1`` depdet's rows are 1 s apart instead.
The signal is zero-padded at the end so the last rows have full examples; a row is ``valid``
when at least half of its example lies inside the real audio.

Weights are local files only (see :mod:`depdet.weights`); nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import numpy as np

from depdet.errors import ConfigError, ExtractionError, WeightsError
from depdet.extractors.base import SAMPLE_RATE, Extractor, StreamFeatures, n_rows

STFT_WINDOW = 400  # 25 ms
STFT_HOP = 160  # 10 ms
FFT_SIZE = 512  # next power of two above the window
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EMBEDDING_SIZE = 128
QUANTIZE_MIN, QUANTIZE_MAX = -2.0, 2.0
#: LMVD's (and Google's) example hop; depdet uses 1/fps instead (see the module docstring).
NATIVE_HOP_SECONDS = 0.96

_CONV_PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


# ------------------------------------------------------------------------------- front end
def periodic_hann(n: int) -> np.ndarray:
    """Hann window of period ``n`` (the DFT-even form: 0.5 - 0.5 cos(2 pi i / n), i < n)."""
    i = np.arange(n)
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * i / n))


def hz_to_mel(hz):
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


@functools.lru_cache(maxsize=4)
def mel_matrix(
    n_bins: int = FFT_SIZE // 2 + 1,
    sr: int = SAMPLE_RATE,
    n_mels: int = NUM_BANDS,
    fmin: float = MEL_MIN_HZ,
    fmax: float = MEL_MAX_HZ,
) -> np.ndarray:
    """(n_bins, n_mels) weights turning an STFT magnitude row into mel bands.

    Band ``m`` is a triangle, linear in mel, rising from edge ``m`` to centre ``m + 1`` and falling to
    edge ``m + 2`` of ``n_mels + 2`` mel-spaced edges from ``fmin`` to ``fmax``. The DC bin gets no
    weight (HTK convention).
    """
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"bad mel range {fmin}-{fmax} Hz for sr={sr}")
    bin_mel = hz_to_mel(np.linspace(0.0, sr / 2.0, n_bins))
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lo) / (mid - lo)
    falling = (hi - bin_mel[:, None]) / (hi - mid)
    w = np.clip(np.minimum(rising, falling), 0.0, None)
    w[0, :] = 0.0
    w.setflags(write=False)
    return w


def log_mel_spectrogram(audio: np.ndarray) -> np.ndarray:
    """(frames, 64) log-mel spectrogram of 16 kHz audio; frames = 1 + (n - 400) // 160 (0 if shorter)."""
    x = np.asarray(audio, np.float64).reshape(-1)
    n = 0 if len(x) < STFT_WINDOW else 1 + (len(x) - STFT_WINDOW) // STFT_HOP
    if n == 0:
        return np.zeros((0, NUM_BANDS))
    frames = np.lib.stride_tricks.sliding_window_view(x, STFT_WINDOW)[::STFT_HOP][:n]
    spec = np.abs(np.fft.rfft(frames * periodic_hann(STFT_WINDOW), FFT_SIZE))
    return np.log(spec @ mel_matrix() + LOG_OFFSET)


def examples_at(log_mel: np.ndarray, start_frames: np.ndarray) -> np.ndarray:
    """(N, 96, 64) patches of ``log_mel`` starting at the given frame indices (must fit)."""
    idx = np.asarray(start_frames, np.int64)[:, None] + np.arange(EXAMPLE_FRAMES)[None, :]
    return log_mel[idx]


def waveform_examples(audio: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Examples for rows ``k = 0..T-1``: the 0.96 s patch starting at ``k / fps``.

    The audio is zero-padded at the end so every row's patch exists.

    Returns:
        (T, 96, 64) float32 patches and (T,) bool validity (at least half the patch is real audio).
    """
    n = len(audio)
    T = n_rows(n / SAMPLE_RATE, fps)
    if T == 0:
        return np.zeros((0, EXAMPLE_FRAMES, NUM_BANDS), np.float32), np.zeros(0, bool)
    starts = np.round(np.arange(T) / fps * (SAMPLE_RATE / STFT_HOP)).astype(np.int64)
    need_frames = int(starts[-1]) + EXAMPLE_FRAMES
    need_samples = STFT_WINDOW + (need_frames - 1) * STFT_HOP
    x = np.asarray(audio, np.float64).reshape(-1)
    if len(x) < need_samples:
        x = np.concatenate([x, np.zeros(need_samples - len(x))])
    lm = log_mel_spectrogram(x)
    ex = examples_at(lm, starts).astype(np.float32)
    example_samples = STFT_WINDOW + (EXAMPLE_FRAMES - 1) * STFT_HOP
    real = np.clip(n - starts * STFT_HOP, 0, example_samples)
    return ex, real >= example_samples / 2


# ------------------------------------------------------------------------------- network
def _build_net(final_relu: bool = True):
    import torch.nn as nn

    class VggishNet(nn.Module):
        """The VGGish network; parameter names match the PyTorch port's checkpoint."""

        def __init__(self):
            super().__init__()
            layers, c_in = [], 1
            for v in _CONV_PLAN:
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    c_in = v
            self.features = nn.Sequential(*layers)
            fc = [
                nn.Linear(512 * 6 * 4, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, EMBEDDING_SIZE),
            ]
            if final_relu:
                fc.append(nn.ReLU(inplace=True))
            self.embeddings = nn.Sequential(*fc)

        def forward(self, x):
            """(N, 1, 96, 64) log-mel patches -> (N, 128) embeddings."""
            x = self.features(x)  # (N, 512, 6, 4)
            x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # TF (NHWC) flattening order
            return self.embeddings(x)

    return VggishNet()


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of the VGGish checkpoint."""
    return {k: tuple(v.shape) for k, v in _build_net().state_dict().items()}


def _torch_load(path: Path):
    """``torch.load(weights_only=True)``, allowing the numpy arrays the PCA file may hold."""
    import torch

    core = getattr(np, "_core", None) or np.core
    recon = core.multiarray._reconstruct
    allow = [
        recon,
        (recon, "numpy.core.multiarray._reconstruct"),
        (recon, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    allow += [type(np.dtype(t)) for t in ("f4", "f8", "i8")]
    with torch.serialization.safe_globals(allow):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def load_network(path: str | Path, final_relu: bool = True):
    """Build the network and load a checkpoint with the PyTorch port's key names.

    Raises:
        WeightsError: the file is not a VGGish state dict (wrong keys or shapes, unreadable).
    """
    import torch

    path = Path(path)
    try:
        state = _torch_load(path)
    except Exception as e:
        raise WeightsError(
            f"cannot read the VGGish checkpoint ({type(e).__name__}: {str(e)[:120]})",
            path=path,
            hint="reinstall it: `depdet weights install vggish --from URL_OR_FILE`",
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    want = expected_state_shapes()
    if not isinstance(state, dict):
        raise WeightsError("not a VGGish state dict", path=path, hint="use vggish-10086976.pth from torchvggish v0.1")
    got = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    if got != want:
        missing = sorted(set(want) - set(got))
        bad = sorted(k for k in want if k in got and got[k] != want[k])
        raise WeightsError(
            f"not a VGGish state dict (missing {missing[:3]}, wrong shapes {bad[:3]})",
            path=path,
            hint="use vggish-10086976.pth from torchvggish v0.1",
        )
    net = _build_net(final_relu)
    net.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in state.items()})
    net.eval()
    return net


def load_pca(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load PCA parameters: (128, 128) eigenvector matrix (rows = components) and (128,) means.

    Raises:
        WeightsError: unreadable file or wrong keys/shapes.
    """
    path = Path(path)
    try:
        params = _torch_load(path) if path.suffix != ".npz" else dict(np.load(path))
        mat = np.asarray(params["pca_eigen_vectors"], np.float64)
        means = np.asarray(params["pca_means"], np.float64).reshape(-1)
    except Exception as e:
        raise WeightsError(
            f"cannot read the VGGish PCA parameters ({type(e).__name__}: {str(e)[:120]})",
            path=path,
            hint="reinstall them: `depdet weights install vggish-pca --from URL_OR_FILE`",
        ) from e
    if mat.shape != (EMBEDDING_SIZE, EMBEDDING_SIZE) or means.shape != (EMBEDDING_SIZE,):
        raise WeightsError(
            f"PCA parameters have shapes {mat.shape}/{means.shape}, expected (128, 128)/(128,)",
            path=path,
            hint="use vggish_pca_params-970ea276.pth from torchvggish v0.1",
        )
    return mat, means


#: 8-bit quantisation rules of the post-processing; the first is the default.
QUANTIZE_RULES = ("truncate", "round")


def check_quantize(quantize) -> str | None:
    """Normalise a quantisation setting: ``"truncate"`` (Google's reference), ``"round"``
    (torchvggish), or None (no quantisation). ``True``/``False`` mean ``"truncate"``/None."""
    if quantize is True:
        return QUANTIZE_RULES[0]
    if quantize is False or quantize is None:
        return None
    if quantize not in QUANTIZE_RULES:
        raise ConfigError(f"unknown VGGish quantisation {quantize!r}", hint=f"choose from {', '.join(QUANTIZE_RULES)}")
    return str(quantize)


def postprocess(
    embeddings: np.ndarray, pca_matrix: np.ndarray, pca_means: np.ndarray, quantize: str | bool | None = "truncate"
) -> np.ndarray:
    """AudioSet post-processing: PCA (with whitening) then, if ``quantize``, clip to [-2, 2] and
    map to 8-bit levels 0..255 (returned as float).

    ``quantize="truncate"`` (default, also ``True``) is Google's reference
    (``vggish_postprocess.Postprocessor``: ``astype(np.uint8)``); ``"round"`` is torchvggish's
    ``torch.round``; None/False returns the PCA output unquantised.
    """
    rule = check_quantize(quantize)
    e = np.asarray(embeddings, np.float64)
    out = (e - pca_means[None, :]) @ pca_matrix.T
    if rule is not None:
        out = np.clip(out, QUANTIZE_MIN, QUANTIZE_MAX)
        out = (out - QUANTIZE_MIN) * (255.0 / (QUANTIZE_MAX - QUANTIZE_MIN))
        out = np.floor(out) if rule == "truncate" else np.round(out)  # values >= 0: floor == uint8 truncation
    return out


# ------------------------------------------------------------------------------- weights
def resolve_weights(
    weights_path: str | Path | None = None, postprocess: bool = True, pca_path: str | Path | None = None
) -> Path:
    """Find and verify the VGGish checkpoint (and, with ``postprocess``, the PCA file too).

    Search order: ``weights_path`` (a file, or a folder holding ``vggish-10086976.pth``),
    ``$DEPDET_WEIGHTS_DIR``, ``~/.cache/depdet/weights``. Call it before a batch to fail fast.

    Returns:
        The checkpoint path.

    Raises:
        WeightsError: a file is missing (the message names it, where it is published and the install
            command) or fails its checksum.
    """
    return resolve_files(weights_path, postprocess, pca_path)[0]


def resolve_files(
    weights_path: str | Path | None = None, postprocess: bool = True, pca_path: str | Path | None = None
) -> tuple[Path, Path | None]:
    """Checkpoint and PCA paths (PCA None without ``postprocess``), verified.

    The PCA file is looked for next to an explicit checkpoint first, then in the search folders.

    Raises:
        WeightsError: as :func:`resolve_weights`.
    """
    from depdet.errors import WeightsError
    from depdet.weights import lookup as WL
    from depdet.weights import registry as W

    names = ["vggish"] + (["vggish-pca"] if postprocess else [])
    if postprocess and pca_path is None and weights_path is not None:
        explicit = WL.locate("vggish", weights_path)
        sibling = (explicit or Path(weights_path)).parent / W.get_entry("vggish-pca").filename
        pca_path = sibling if sibling.is_file() else None
    given = {"vggish": weights_path, "vggish-pca": pca_path}
    missing = [n for n in names if WL.locate(n, given[n]) is None]
    if missing:  # name every file needed, so the user installs them in one go
        files = [W.get_entry(n) for n in missing]
        where = ", ".join(str(d) for d in WL.search_dirs())
        raise WeightsError(
            "VGGish needs "
            + " and ".join(f"{e.filename} ({e.name}, {e.url})" for e in files)
            + f", not found in {where}"
            + ("" if postprocess else " (post-processing off: the PCA file is not needed)"),
            hint=(
                "download them, then `depdet weights install vggish --from DIR` installs every VGGish file found in DIR "
                "(or pass --no-vggish-postprocess to skip the PCA file)"
            )
            if postprocess
            else "download it, then `depdet weights install vggish --from FILE_OR_DIR`",
        )
    ckpt = WL.require("vggish", weights_path)
    pca = WL.require("vggish-pca", pca_path) if postprocess else None
    return ckpt, pca


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _cached_network(path: str, final_relu: bool, device: str = "cpu"):
    return load_network(path, final_relu).to(device)


@functools.lru_cache(maxsize=4)
def _cached_pca(path: str) -> tuple[np.ndarray, np.ndarray]:
    return load_pca(path)


class Vggish(Extractor):
    """VGGish embeddings, one per output row (0.96 s example starting at ``k / fps``).

    Args:
        weights_path: checkpoint file or folder (default: ``$DEPDET_WEIGHTS_DIR``, then the cache).
        postprocess: apply PCA + clip + 8-bit quantisation (as the released AudioSet embeddings).
        quantize: ``"truncate"`` (Google's reference, default) or ``"round"`` (torchvggish); see
            :func:`postprocess`.
        final_relu: keep the port's ReLU after the 128-d layer (see the module docstring).
        pca_path: PCA parameter file (default: next to the checkpoint, then the search folders).
        batch_size: examples per forward pass.
        device: ``cpu`` or a CUDA device (``cuda``, ``cuda:N``): where the network runs.

    Raises:
        WeightsError: weights missing or failing their checksum (at construction).
    """

    name = "vggish"
    modality = "audio"
    dim = EMBEDDING_SIZE
    version = "2"  # 2: quantisation truncates (Google's reference) by default; channel-mean down-mix
    columns = tuple(f"vggish_{i:03d}" for i in range(EMBEDDING_SIZE))

    def __init__(
        self,
        weights_path: str | Path | None = None,
        postprocess: bool = True,
        final_relu: bool = True,
        pca_path: str | Path | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        quantize: str = "truncate",
    ):
        self.postprocess = bool(postprocess)
        self.quantize = check_quantize(quantize)
        self.device = str(device)
        self.final_relu = bool(final_relu)
        self.batch_size = int(batch_size)
        self.weights_path, self.pca_path = resolve_files(weights_path, self.postprocess, pca_path)
        with _LOCK:
            self.net = _cached_network(str(self.weights_path), self.final_relu, self.device)
            self.pca = _cached_pca(str(self.pca_path)) if self.pca_path is not None else None

    def embed(self, examples: np.ndarray) -> np.ndarray:
        """(N, 96, 64) log-mel patches -> (N, 128) raw (not post-processed) embeddings."""
        import torch

        outs = []
        with torch.inference_mode():
            for i in range(0, len(examples), self.batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(examples[i : i + self.batch_size], np.float32))[:, None]
                outs.append(self.net(xb.to(self.device)).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, EMBEDDING_SIZE), np.float32)

    def extract(self, audio: np.ndarray, sr: int, fps: float) -> StreamFeatures:
        """Embed the 0.96 s example starting at each ``k / fps``.

        Args:
            audio: 1-D float waveform at 16 kHz (``decode.load_audio(path, 16000)``).
            sr: must be 16000.
            fps: output rows per second.

        Returns:
            StreamFeatures (T, 128), T = ceil(len(audio) / sr * fps).

        Raises:
            ExtractionError: wrong sample rate.
        """
        if int(sr) != SAMPLE_RATE:
            raise ExtractionError(
                f"VGGish needs {SAMPLE_RATE} Hz audio, got {sr} Hz",
                hint="load it with depdet.pipeline.media.audio.load_audio(path, 16000)",
            )
        examples, valid = waveform_examples(np.asarray(audio, np.float32).reshape(-1), fps)
        emb = self.embed(examples)
        if self.pca is not None:
            emb = postprocess(emb, *self.pca, quantize=self.quantize)
        info = {
            "example_s": EXAMPLE_FRAMES * STFT_HOP / SAMPLE_RATE,
            "hop_s": 1.0 / fps,
            "native_hop_s": NATIVE_HOP_SECONDS,
            "postprocess": self.postprocess,
            "quantize": self.quantize if self.postprocess else None,
        }
        return StreamFeatures(emb.astype(np.float32), valid, fps, info)

    @classmethod
    def model_files(cls, weights_path=None, postprocess: bool = True, pca_path=None, **_) -> dict:
        weights, pca = resolve_files(weights_path, postprocess, pca_path)
        return {"vggish": weights, **({"vggish-pca": pca} if pca is not None else {})}

    def describe(self) -> dict:
        """Provenance: checkpoint and PCA paths with SHA-256, post-processing, final ReLU, hop."""
        from depdet.weights.lookup import file_sha256

        return {
            **super().describe(),
            "weights": str(self.weights_path),
            "weights_sha256": file_sha256(self.weights_path),
            "pca": str(self.pca_path) if self.pca_path else None,
            "pca_sha256": file_sha256(self.pca_path) if self.pca_path else None,
            "postprocess": self.postprocess,
            "quantize": self.quantize if self.postprocess else None,
            "final_relu": self.final_relu,
            "example_s": 0.96,
            "hop": "1/fps (LMVD native: 0.96 s)",
        }
