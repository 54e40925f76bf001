"""Fault injection (issue 13): hostile caches, names, media, checkpoints, interruptions and full disks.

Each case of the issue is reproduced here as it was reported, then checked against the fix: nothing a
user gives depdet (a video, a name, a checkpoint, a weight file, an environment) may make it run
foreign code, hang, exhaust the machine, crash its error boundary or lose results already computed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli, write_video

IS_ROOT = hasattr(os, "getuid") and os.getuid() == 0
OTHER_UID = 65534  # "nobody"


# ================================================================ 1. planted shared libraries / weights
@pytest.fixture
def kernel(monkeypatch, tmp_path):
    """The scan-kernel module unloaded, with its cache under tmp_path/cache."""
    from depdet.models import scan_kernel as K

    if K._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(K, "_lib", None)
    monkeypatch.setattr(K, "_error", None)
    monkeypatch.setattr(K, "_tried", False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(K.tempfile, "tempdir", str(tmp))
    return K


def _planted_library(path: Path, marker: Path) -> None:
    """A shared library whose constructor writes ``marker`` (the attack of the issue) and that
    exports a plausible ``depdet_scan_abi``."""
    src = path.with_suffix(".c")
    src.write_text('#include <stdio.h>\n'
                   f'__attribute__((constructor)) static void pwn(void) {{ FILE *f = fopen("{marker}", "w"); '
                   'if (f) { fputs("ran", f); fclose(f); } }\n'
                   'int depdet_scan_abi(void) { return 5; }\n')
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(path)], check=True, capture_output=True)
    src.unlink()


def test_old_predictable_temp_fallback_is_never_loaded(kernel, tmp_path):
    K = kernel
    cc = K._compiler()
    blocker = tmp_path / "cache"
    blocker.write_text("a file: the cache cannot be created")
    planted_dir = tmp_path / "tmp" / f"depdet-kernels-{os.getuid()}"
    planted_dir.mkdir(mode=0o777)
    marker = tmp_path / "pwned"
    _planted_library(planted_dir / K.library_name(cc), marker)
    assert K.available(), K.build_error()
    assert not marker.exists()
    lib = Path(K.library_path())
    assert lib.parent != planted_dir and lib.parent.parent == tmp_path / "tmp"
    assert stat.S_IMODE(lib.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("case", ["no digest", "wrong digest", "group-writable file", "world-writable folder",
                                  "symlink", "other owner"])
def test_cached_kernel_loaded_only_when_ours_private_and_digest_matches(kernel, tmp_path, case):
    K = kernel
    cc = K._compiler()
    folder = tmp_path / "cache" / "depdet" / "kernels"
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(folder, 0o700)
    name = K.library_name(cc)
    marker = tmp_path / "pwned"
    lib = folder / name
    if case == "symlink":
        _planted_library(tmp_path / "evil.so", marker)
        lib.symlink_to(tmp_path / "evil.so")
    else:
        _planted_library(lib, marker)
    digest = folder / (name + ".sha256")
    from depdet.fileio import sha256_file

    real = sha256_file(lib)
    digest.write_text(("0" * 64 if case == "wrong digest" else real) + "\n")
    os.chmod(digest, 0o600)
    if case == "no digest":
        digest.unlink()
    elif case == "group-writable file":
        os.chmod(lib, 0o775)
    elif case == "world-writable folder":
        os.chmod(folder, 0o777)
    elif case == "other owner":
        if not IS_ROOT:
            pytest.skip("chown to another user needs root")
        os.chown(lib, OTHER_UID, -1)
        os.chown(digest, OTHER_UID, -1)
    assert K.available(), K.build_error()
    assert not marker.exists(), f"planted library ran ({case})"
    assert K.cached_library_problem(Path(K.library_path())) is None or case == "world-writable folder"


def test_kernel_cache_is_private_and_reused(kernel, tmp_path):
    K = kernel
    assert K.available(), K.build_error()
    folder = tmp_path / "cache" / "depdet" / "kernels"
    lib = Path(K.library_path())
    assert lib.parent == folder and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not lib.stat().st_mode & 0o022 and K.cached_library_problem(lib) is None
    assert K._build(K._compiler()) == lib  # trusted: reused without a rebuild


def test_weights_from_an_untrusted_cache_are_refused(monkeypatch, tmp_path):
    from depdet import weights as W
    from depdet.errors import WeightsError

    d = tmp_path / "w"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    monkeypatch.setenv(W.ENV_DIR, str(d))
    entry = W.get_entry("vggish")
    (d / entry.filename).write_bytes(b"planted")
    with pytest.raises(WeightsError, match="untrusted location"):
        W.locate("vggish")
    os.chmod(d, 0o755)
    assert W.locate("vggish") == d / entry.filename
