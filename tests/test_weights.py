"""Tests for depdet.weights (registry, lookup order, checksums, atomic install) and `depdet weights`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from depdet.cli import app
from depdet.errors import WeightsError
from depdet.weights import install as WI
from depdet.weights import lookup as WL
from depdet.weights import registry as W


@pytest.fixture
def wdir(tmp_path, monkeypatch):
    d = tmp_path / "weights"
    monkeypatch.setenv(WL.ENV_DIR, str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(W, "REGISTRY", dict(W.REGISTRY))  # overrides stay local to the test
    WL._DIGESTS.clear()
    return d


def _blob(tmp_path: Path, name="src.bin", data=b"fake weights " * 100) -> tuple[Path, str]:
    p = tmp_path / name
    p.write_bytes(data)
    return p, hashlib.sha256(data).hexdigest()


def test_registry_entries_are_complete():
    for name, e in W.REGISTRY.items():
        assert e.name == name and e.filename and e.url.startswith("http") and e.licence and e.used_by
    assert W.REGISTRY["vggish"].filename == "vggish-10086976.pth"
    # torch.hub convention: the 8 hex digits in the file name are the SHA-256 prefix
    assert W.REGISTRY["vggish"].sha256_prefix == "10086976"
    assert W.REGISTRY["vggish-pca"].sha256_prefix == "970ea276"
    assert W.REGISTRY["vggish"].check == "sha256 prefix"


def test_prefix_and_full_matching():
    e = W.REGISTRY["vggish"]
    assert e.matches("10086976" + "0" * 56) and not e.matches("10086977" + "0" * 56)
    full = W.WeightFile("x", "x.bin", "https://x", "ab" * 32, "", "l", "u")
    assert full.matches("AB" * 32) and not full.matches("ab" * 31 + "ac")
    assert full.check == "sha256"


def test_missing_gives_actionable_error(wdir):
    with pytest.raises(WeightsError) as ei:
        WL.require("vggish")
    msg = str(ei.value)
    assert "\n" not in msg and "vggish-10086976.pth" in msg and "github.com/harritaylor" in msg
    assert "depdet weights install vggish" in msg and str(wdir) in msg
    assert WL.status("vggish").status == "missing"


def test_unknown_name(wdir):
    with pytest.raises(WeightsError, match="choose from vggish"):
        W.get_entry("nope")


def test_install_verifies_and_is_found(wdir, tmp_path):
    src, sha = _blob(tmp_path)
    W.with_override("vggish", sha256=sha)
    path = WI.install("vggish", src)
    assert path == wdir / "vggish-10086976.pth" and path.read_bytes() == src.read_bytes()
    assert WL.require("vggish") == path
    st = WL.status("vggish")
    assert (st.status, st.path, st.sha256) == ("ok", path, sha)
    assert not list(wdir.glob(".*.tmp"))


def test_install_refuses_mismatch_and_leaves_nothing(wdir, tmp_path):
    src, sha = _blob(tmp_path)
    W.with_override("vggish", sha256="0" * 64)
    with pytest.raises(WeightsError, match="refused vggish"):
        WI.install("vggish", src)
    assert not (wdir / "vggish-10086976.pth").exists()
    assert not wdir.exists() or not list(wdir.iterdir())


def test_prefix_check_on_real_prefix(wdir, tmp_path):
    """With only the 8-hex prefix known, a file whose digest starts with it passes."""
    src, sha = _blob(tmp_path)
    W.with_override("vggish-pca", sha256_prefix=sha[:8])
    WI.install("vggish-pca", src)
    assert WL.status("vggish-pca").status == "ok"


def test_checksum_mismatch_status_and_require(wdir, tmp_path):
    wdir.mkdir(parents=True)
    (wdir / "vggish-10086976.pth").write_bytes(b"corrupted")
    assert WL.status("vggish").status == "checksum mismatch"
    with pytest.raises(WeightsError, match="checksum mismatch"):
        WL.require("vggish")


def test_search_order_explicit_env_cache(wdir, tmp_path, monkeypatch):
    data = b"w" * 64
    W.with_override("vggish", sha256=hashlib.sha256(data).hexdigest())
    cache = tmp_path / "xdg" / "depdet" / "weights"
    cache.mkdir(parents=True)
    (cache / "vggish-10086976.pth").write_bytes(data)
    assert WL.locate("vggish") == cache / "vggish-10086976.pth"
    wdir.mkdir(parents=True)
    (wdir / "vggish-10086976.pth").write_bytes(data)
    assert WL.locate("vggish") == wdir / "vggish-10086976.pth"  # env dir wins over the cache
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(data)
    assert WL.locate("vggish", explicit) == explicit
    assert WL.locate("vggish", wdir) == wdir / "vggish-10086976.pth"  # a folder works too
    with pytest.raises(WeightsError, match="not found"):
        WL.locate("vggish", tmp_path / "absent.pth")
    monkeypatch.delenv(WL.ENV_DIR)
    assert WL.cache_dir() == cache


def test_install_from_file_url(wdir, tmp_path):
    src, sha = _blob(tmp_path)
    W.with_override("vggish", sha256=sha)
    assert WI.install("vggish", src.as_uri()).read_bytes() == src.read_bytes()


def test_install_over_http(wdir, tmp_path):
    """Download path, against a local HTTP server (no outside network)."""
    import functools
    import http.server
    import threading

    src, sha = _blob(tmp_path, data=b"served weights " * 5000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{src.name}"
        W.with_override("vggish", sha256=sha)
        assert WI.install("vggish", url).read_bytes() == src.read_bytes()
        W.with_override("vggish-pca", sha256="f" * 64)
        with pytest.raises(WeightsError, match="refused"):
            WI.install("vggish-pca", url)
        with pytest.raises(WeightsError, match="download of vggish failed"):
            WI.install("vggish", url + ".missing")
    finally:
        server.shutdown()
        server.server_close()
    assert not (wdir / "vggish_pca_params-970ea276.pth").exists()


def test_install_from_bad_url(wdir):
    with pytest.raises(WeightsError, match="download of vggish failed"):
        WI.install("vggish", "file:///nonexistent/dir/vggish.pth")


def test_dlib_models_found_in_package_without_import():
    import sys

    sys.modules.pop("face_recognition_models", None)
    for name in ("dlib-shape68", "dlib-mmod"):
        st = WL.status(name)
        assert st.status == "ok" and st.path.name == W.REGISTRY[name].filename
        assert "face_recognition_models" in str(st.path)
    assert "face_recognition_models" not in sys.modules


def test_cli_list_and_install(wdir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["weights"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for word in ("vggish", "missing", "dlib-shape68", "ok", "iBUG 300-W", "depdet weights install vggish"):
        assert word in res.output
    src, sha = _blob(tmp_path)
    W.with_override("vggish", sha256=sha)
    res = runner.invoke(app, ["weights", "install", "vggish", "--from", str(src)])
    assert res.exit_code == 0, res.output
    assert (wdir / "vggish-10086976.pth").is_file()
    res = runner.invoke(app, ["weights", "list"], env={"COLUMNS": "200"})
    assert sha in res.output


def test_cli_refuses_mismatch(wdir, tmp_path):
    from depdet.cli import main

    src, _ = _blob(tmp_path)
    with pytest.raises(SystemExit) as ei:
        main(["weights", "install", "vggish", "--from", str(src)])
    assert ei.value.code == 1
    assert not (wdir / "vggish-10086976.pth").exists()


def test_vggish_error_names_every_file_and_install_from_a_folder_takes_both(wdir, tmp_path, capsys):
    from conftest import run_cli

    from depdet.extractors.vggish import resolve_files

    with pytest.raises(WeightsError) as e:
        resolve_files(None, postprocess=True)
    msg = str(e.value)
    assert "vggish-10086976.pth" in msg and "vggish_pca_params-970ea276.pth" in msg and "\n" not in msg
    assert "depdet weights install vggish --from DIR" in msg
    with pytest.raises(WeightsError) as e:
        resolve_files(None, postprocess=False)
    assert "vggish_pca_params" not in str(e.value).split("(post-processing off")[0]
    folder = tmp_path / "downloads"
    folder.mkdir()
    w, wsha = _blob(folder, "vggish-10086976.pth", b"net " * 50)
    p, psha = _blob(folder, "vggish_pca_params-970ea276.pth", b"pca " * 50)
    W.with_override("vggish", sha256=wsha)
    W.with_override("vggish-pca", sha256=psha)
    code, out, err = run_cli(["weights", "install", "vggish", "--from", folder], capsys)
    assert code == 0, err
    assert "installed vggish ->" in out and "installed vggish-pca ->" in out
    assert resolve_files(None, postprocess=True) == (
        wdir / "vggish-10086976.pth",
        wdir / "vggish_pca_params-970ea276.pth",
    )
    code, out, err = run_cli(["info"], capsys)
    assert "weights vggish: ok" in out and "weights vggish-pca: ok" in out
    code, out, err = run_cli(["weights", "install", "vggish", "--from", tmp_path], capsys)
    assert code == 1 and "vggish-10086976.pth (vggish) is not in this folder" in " ".join(err.split())
