"""Tests for the audio extractors: eGeMAPS LLD means and VGGish (front end, network, post-processing).

VGGish is checked against torchvggish (dev/test dependency only) built directly, with a seeded
random state dict saved under the official key names and PCA parameters made here: no download.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from depdet.errors import ExtractionError, WeightsError
from depdet.extractors import get_extractor
from depdet.extractors import vggish as V
from depdet.extractors.egemaps import EGEMAPS_COLUMNS, Egemaps, mean_per_window
from depdet.weights import lookup as WL
from depdet.weights import registry as W

GRID = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "grid"
needs_grid = pytest.mark.skipif(not GRID.is_dir(), reason=f"GRID media folder {GRID} is absent")


@pytest.fixture(scope="module")
def grid_audio():
    if not GRID.is_dir():
        pytest.skip(f"GRID media folder {GRID} is absent")
    from depdet.pipeline.media.audio import load_audio

    return load_audio(sorted(GRID.glob("*.mpg"))[0], 16000)


# ------------------------------------------------------------------------------ eGeMAPS
def test_mean_per_window_rule():
    times = np.array([0.005, 0.5, 0.999, 1.0, 2.5])
    vals = np.array([[1.0], [3.0], [5.0], [10.0], [7.0]])
    m, v = mean_per_window(vals, times, 1.0, 4)
    assert m[:, 0].tolist() == [3.0, 10.0, 7.0, 0.0]
    assert v.tolist() == [True, True, True, False]
    m, v = mean_per_window(np.array([[np.nan, 1.0], [2.0, 3.0]]), np.array([0.1, 0.2]), 1.0, 1)
    assert m.tolist() == [[2.0, 2.0]]
    m, v = mean_per_window(np.full((2, 3), np.nan), np.array([0.1, 1.2]), 1.0, 2)
    assert not v.any() and (m == 0).all()


def test_egemaps_synthetic_tone_rows_and_f0():
    sr = 16000
    t = np.arange(int(2.5 * sr)) / sr
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    f = Egemaps().extract(audio, sr, 1.0)
    assert f.values.shape == (3, 25) and f.valid.all() and f.values.dtype == np.float32
    assert f.info["columns"] == list(EGEMAPS_COLUMNS)
    f0 = f.values[:, EGEMAPS_COLUMNS.index("F0semitoneFrom27.5Hz_sma3nz")]
    # 220 Hz is 36 semitones above 27.5 Hz; voiced throughout the middle second
    assert abs(f0[1] - 36.0) < 1.0
    f2 = Egemaps().extract(audio, sr, 2.0)
    assert len(f2) == 5


@needs_grid
def test_egemaps_grid(grid_audio):
    f = get_extractor("egemaps").extract(grid_audio, 16000, 5.0)
    assert f.values.shape == (15, 25) and np.isfinite(f.values).all() and f.valid.all()
    f0 = f.values[:, EGEMAPS_COLUMNS.index("F0semitoneFrom27.5Hz_sma3nz")]
    assert f0.max() > 10 and f0.std() > 1.0  # pitch varies during the sentence
    loud = f.values[:, 0]
    assert loud.max() > 2 * loud.min()


def test_egemaps_empty_and_too_short_audio():
    f = Egemaps().extract(np.zeros(0, np.float32), 16000, 1.0)
    assert f.values.shape == (0, 25)
    f = Egemaps().extract(np.zeros(100, np.float32), 16000, 1.0)  # openSMILE fills NaN: row invalid, zeros
    assert f.values.shape == (1, 25) and not f.valid.any() and (f.values == 0).all()
    assert "Segment too short" in " ".join(f.info.get("warnings", []))


# ------------------------------------------------------------------------------ VGGish front end
def test_front_end_matches_torchvggish():
    from torchvggish import vggish_input

    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000 * 3) * 0.1
    ref = vggish_input.waveform_to_examples(x, 16000, return_tensor=False)  # hop 0.96 s
    lm = V.log_mel_spectrogram(x)
    mine = V.examples_at(lm, np.arange(len(ref)) * 96)
    np.testing.assert_allclose(mine, ref, atol=1e-9)


def test_examples_follow_the_output_timeline():
    x = np.random.default_rng(1).standard_normal(int(16000 * 2.5)).astype(np.float32) * 0.1
    ex, valid = V.waveform_examples(x, 1.0)
    assert ex.shape == (3, 96, 64)
    lm = V.log_mel_spectrogram(x.astype(np.float64))
    np.testing.assert_allclose(ex[1], lm[100:196], atol=1e-4)  # row 1 starts at 1.0 s = frame 100
    assert valid.tolist() == [True, True, True]  # row 2: 0.5 s real of 0.96 s
    ex4, valid4 = V.waveform_examples(x, 4.0)
    assert len(ex4) == 10 and valid4.tolist() == [True] * 9 + [False]  # row 9 starts at 2.25 s: 0.25 s real


def test_mel_matrix_properties():
    m = V.mel_matrix()
    assert m.shape == (257, 64) and (m[0] == 0).all() and (m >= 0).all()
    assert (m.sum(0) > 0).all()
    assert m[:, 0].argmax() < m[:, -1].argmax()


# ------------------------------------------------------------------------------ VGGish network
@pytest.fixture(scope="module")
def ref_model_files(tmp_path_factory):
    """A torchvggish VGG with seeded random weights, saved with the official key names, and PCA params."""
    from torchvggish.torchvggish import VGG, make_layers

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ref = VGG(make_layers(), postprocess=False).eval()
    with torch.no_grad():  # larger weights so outputs are not all tiny
        for p in ref.parameters():
            p.mul_(3.0)
    d = tmp_path_factory.mktemp("vggish")
    ckpt = d / "vggish-10086976.pth"
    torch.save(ref.state_dict(), ckpt)
    rng = np.random.default_rng(0)
    pca = {"pca_eigen_vectors": rng.standard_normal((128, 128)) * 0.5, "pca_means": rng.standard_normal(128) * 0.01}
    pca_file = d / "vggish_pca_params-970ea276.pth"
    torch.save(pca, pca_file)  # numpy arrays, as the published file holds
    return ref, ckpt, pca_file, pca


@pytest.fixture
def trusting_registry(monkeypatch, ref_model_files):
    """Registry entries whose expected digests are those of the files made above."""
    _, ckpt, pca_file, _ = ref_model_files
    monkeypatch.setattr(W, "REGISTRY", dict(W.REGISTRY))
    W.with_override("vggish", sha256=hashlib.sha256(ckpt.read_bytes()).hexdigest())
    W.with_override("vggish-pca", sha256=hashlib.sha256(pca_file.read_bytes()).hexdigest())
    return ref_model_files


def test_network_matches_torchvggish(ref_model_files):
    ref, ckpt, _, _ = ref_model_files
    net = V.load_network(ckpt)
    x = torch.randn(3, 1, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = ref(x).numpy(), net(x).numpy()
    assert a.std() > 1e-3
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    pre = V.load_network(ckpt, final_relu=False)
    with torch.no_grad():
        c = pre(x).numpy()
        d = ref.embeddings[:-1](ref.features(x).permute(0, 2, 3, 1).reshape(3, -1)).numpy()
    np.testing.assert_allclose(c, d, rtol=1e-5, atol=1e-6)
    assert (c < 0).any() and (a >= 0).all()


def test_postprocess_matches_torchvggish(ref_model_files):
    from torchvggish.torchvggish import Postprocessor

    _, _, pca_file, pca = ref_model_files
    pp = Postprocessor.__new__(Postprocessor)  # its __init__ downloads; set the parameters ourselves
    pp._pca_matrix = torch.as_tensor(pca["pca_eigen_vectors"]).float()
    pp._pca_means = torch.as_tensor(pca["pca_means"].reshape(-1, 1)).float()
    emb = np.random.default_rng(2).standard_normal((5, 128))
    ref = pp.postprocess(torch.as_tensor(emb).float()).numpy()
    mat, means = V.load_pca(pca_file)
    mine = V.postprocess(emb, mat, means, quantize="round")  # torchvggish rounds
    assert np.abs(mine - ref).max() <= 1.0  # float32 vs float64 rounding at .5 boundaries only
    assert (mine == ref).mean() > 0.99
    assert mine.min() >= 0 and mine.max() <= 255 and np.all(mine == np.round(mine))
    raw = V.postprocess(emb, mat, means, quantize=False)
    np.testing.assert_allclose(raw, (emb - means) @ mat.T)


def _google_postprocess(emb, mat, means):
    """Google's reference, models/research/audioset/vggish/vggish_postprocess.py Postprocessor.postprocess
    (pca_matrix and pca_means with means as a column vector), verbatim in numpy."""
    pca_applied = np.dot(mat, (emb.T - means.reshape(-1, 1))).T
    clipped = np.clip(pca_applied, -2.0, 2.0)
    quantized = (clipped - -2.0) * (255.0 / (2.0 - -2.0))
    return quantized.astype(np.uint8)


def test_postprocess_default_is_googles_truncation(ref_model_files):
    """Issue 22 item 8: the default quantisation is Google's (truncation), rounding is torchvggish's option."""
    _, _, pca_file, _ = ref_model_files
    mat, means = V.load_pca(pca_file)
    emb = np.random.default_rng(4).standard_normal((50, 128))
    google = _google_postprocess(emb, mat, means).astype(np.float64)
    np.testing.assert_array_equal(V.postprocess(emb, mat, means), google)
    np.testing.assert_array_equal(V.postprocess(emb, mat, means, quantize="truncate"), google)
    rounded = V.postprocess(emb, mat, means, quantize="round")
    inside = (google > 0) & (google < 254)  # not clipped: about half round up, one level
    assert inside.sum() > 500 and 0.3 < (rounded != google)[inside].mean() < 0.7
    assert set(np.unique(rounded - google)) <= {0.0, 1.0}
    with pytest.raises(Exception, match="truncate, round"):
        V.postprocess(emb, mat, means, quantize="ceil")
    assert "astype(np.uint8)" in V.__doc__ and "truncates" in V.__doc__  # the docstring says what it does


def test_vggish_extractor_end_to_end(trusting_registry, monkeypatch):
    from torchvggish import vggish_input

    ref, ckpt, pca_file, _ = trusting_registry
    monkeypatch.setenv(WL.ENV_DIR, str(ckpt.parent))
    x = (np.random.default_rng(3).standard_normal(int(16000 * 2.4)) * 0.1).astype(np.float32)
    ext = get_extractor("vggish", postprocess=False)
    f = ext.extract(x, 16000, 1 / 0.96)  # at the native hop the rows are torchvggish's examples
    ex = vggish_input.waveform_to_examples(x.astype(np.float64), 16000, return_tensor=True).detach()
    with torch.no_grad():
        want = ref(ex).numpy()
    assert f.values.shape == (3, 128) and f.valid.tolist() == [True, True, False]
    np.testing.assert_allclose(f.values[:2], want[:2], rtol=1e-4, atol=1e-5)
    assert V.resolve_weights(str(ckpt)) == ckpt  # the PCA file beside it is found and verified too
    g = get_extractor("vggish", weights_path=ckpt).extract(x, 16000, 1.0)
    assert g.values.shape == (3, 128) and g.values.min() >= 0 and g.values.max() <= 255
    assert g.info["native_hop_s"] == 0.96
    desc = ext.describe()
    assert desc["weights_sha256"] == W.REGISTRY["vggish"].sha256 and desc["postprocess"] is False


def test_vggish_wrong_rate(trusting_registry):
    _, ckpt, _, _ = trusting_registry
    with pytest.raises(ExtractionError, match="16000 Hz"):
        get_extractor("vggish", weights_path=ckpt).extract(np.zeros(8000, np.float32), 8000, 1.0)


def test_vggish_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(WL.ENV_DIR, str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(WeightsError) as ei:
        get_extractor("vggish")
    msg = str(ei.value)
    assert "vggish-10086976.pth" in msg and "depdet weights install vggish" in msg and "github.com" in msg


def test_vggish_checksum_and_bad_file(tmp_path, monkeypatch, ref_model_files):
    _, ckpt, _, _ = ref_model_files
    monkeypatch.setattr(W, "REGISTRY", dict(W.REGISTRY))
    with pytest.raises(WeightsError, match="checksum mismatch"):  # real prefix 10086976 vs a random file
        V.resolve_weights(ckpt, postprocess=False)
    with pytest.raises(WeightsError, match="checksum mismatch"):
        V.resolve_weights(str(ckpt))
    bad = tmp_path / "vggish-10086976.pth"
    torch.save({"foo": torch.zeros(3)}, bad)
    with pytest.raises(WeightsError, match="not a VGGish state dict"):
        V.load_network(bad)


def test_runtime_code_does_not_import_torchvggish():
    import ast

    tree = ast.parse(Path(V.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.startswith("torchvggish")]


@needs_grid
def test_vggish_grid_shapes(trusting_registry, grid_audio):
    _, ckpt, _, _ = trusting_registry
    f = get_extractor("vggish", weights_path=ckpt).extract(grid_audio, 16000, 1.0)
    assert f.values.shape == (3, 128) and np.isfinite(f.values).all() and f.valid.all()
    f5 = get_extractor("vggish", weights_path=ckpt).extract(grid_audio, 16000, 5.0)
    assert f5.values.shape == (15, 128)


# ------------------------------------------------------------------------------ decoding fidelity (issue 22 item 8)
def _write_wav(path: Path, channels: np.ndarray, sr: int) -> Path:
    """(C, n) float samples -> 16-bit PCM WAV (C = 1 or 2)."""
    from fractions import Fraction

    import av

    pcm = np.clip(channels * 32767, -32768, 32767).astype(np.int16)
    layout = "mono" if len(pcm) == 1 else "stereo"
    with av.open(str(path), "w") as oc:
        s = oc.add_stream("pcm_s16le", rate=sr, layout=layout)
        for k in range(0, pcm.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[:, k : k + 1024].T.reshape(1, -1)), format="s16", layout=layout
            )
            f.sample_rate, f.pts, f.time_base = sr, k, Fraction(1, sr)
            for p in s.encode(f):
                oc.mux(p)
        for p in s.encode(None):
            oc.mux(p)
    return path


def _speechlike(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t)
    x = env * (0.25 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 720 * t))
    return x + 0.01 * np.random.default_rng(5).standard_normal(t.size)


@pytest.fixture(scope="module")
def stereo_mono_twins(tmp_path_factory):
    d = tmp_path_factory.mktemp("twins")
    x = _speechlike(3.0, 44100)
    return _write_wav(d / "mono.wav", x[None], 44100), _write_wav(d / "stereo.wav", np.stack([x, x]), 44100)


def test_stereo_with_equal_channels_decodes_as_its_mono_twin(stereo_mono_twins):
    from depdet.pipeline.media.audio import load_audio

    mono, stereo = (load_audio(p, 16000) for p in stereo_mono_twins)
    assert mono.shape == stereo.shape
    np.testing.assert_allclose(stereo, mono, atol=1e-6)  # the channel mean, not FFmpeg's (L+R)/sqrt(2)


def test_stereo_and_mono_twins_give_the_same_egemaps_loudness(stereo_mono_twins):
    from depdet.pipeline.media.audio import load_audio

    lm, ls = (Egemaps().extract(load_audio(p, 16000), 16000, 1.0).values[:, 0] for p in stereo_mono_twins)
    assert lm.min() > 0
    ratio = ls / lm
    assert np.all(np.abs(ratio - 1) < 0.01), ratio  # before issue 22: 1.257 (a +3 dB down-mix)


def test_stereo_and_mono_twins_give_equal_vggish_embeddings(stereo_mono_twins, trusting_registry):
    from depdet.pipeline.media.audio import load_audio

    _, ckpt, _, _ = trusting_registry
    ext = get_extractor("vggish", weights_path=ckpt)
    em, es = (ext.extract(load_audio(p, 16000), 16000, 1.0).values for p in stereo_mono_twins)
    np.testing.assert_array_equal(es, em)


@pytest.mark.parametrize("sr,seconds", [(44100, 3.0), (48000, 2.3456), (22050, 1.01), (8000, 2.5)])
def test_resampled_length_is_the_duration_at_16k(tmp_path, sr, seconds):
    """The resampler is flushed: no samples lost at the end (length = round(duration * 16 kHz) +- 1)."""
    from depdet.pipeline.media.audio import load_audio

    x = _speechlike(seconds, sr)
    a = load_audio(_write_wav(tmp_path / f"x{sr}.wav", x[None], sr), 16000)
    assert abs(a.size - round(x.size / sr * 16000)) <= 1, (a.size, x.size / sr * 16000)
    assert np.abs(a[-200:]).max() > 0.05  # the tail holds the signal, not zeros
