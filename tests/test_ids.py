"""Sample ids from real-world file names: same-named files in different folders, Unicode names, a
leading dash, labels keyed on the real names, ``predict --id-from`` and its ``source`` field.

Media: tiny synthetic clips (grey frames, a tone), copied under many names; extraction runs with
``--allow-partial`` (no face: the visual stream is missing), which is enough to check the ids.
"""

from __future__ import annotations

import csv
import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from conftest import run_cli, write_video

from depdet.errors import DataError
from depdet.ids import MAX_ID_BYTES, assign_ids, sanitize_id
from depdet.pipeline.media.inputs import discover_inputs
from depdet.pipeline.store import check_id
from depdet.pipeline.store.labels import match_labels

NFC_ZOE = unicodedata.normalize("NFC", "Zoë")
NFD_ZOE = unicodedata.normalize("NFD", "Zoë")


# ------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(
    "name, sid",
    [
        ("0602", "0602"),
        ("17", "17"),
        ("clip_01", "clip_01"),
        ("my clip (1)", "my_clip_1"),  # ASCII: as before
        ("p01/vlog", "p01_vlog"),
        ("_x_", "x"),
        (NFC_ZOE, NFC_ZOE),
        (NFD_ZOE, NFC_ZOE),
        ("日本 clip", "日本_clip"),
        ("Ελένη", "Ελένη"),
        ("-dash", "dash"),
        ("--x", "x"),
        ("a..b", "a_b"),
        ("..", "clip"),
        ("", "clip"),
        ('a/b\\c:d*e?f"g<h>i|j', "a_b_c_d_e_f_g_h_i_j"),
        ("x\x00y\x1bz", "x_y_z"),
        ("a\u202eb", "a_b"),
        ("audio", "audio_"),
        ("CON.x", "CON_.x"),
        ("nul", "nul_"),
        (".hidden", "hidden"),
        ("trail. ", "trail"),
    ],
)
def test_sanitize_id(name, sid):
    assert sanitize_id(name) == sid
    assert check_id(sid) == sid  # every id the rule makes is one the store accepts


def test_long_names_are_cut_in_bytes_with_a_hash():
    a, b = sanitize_id("é" * 150 + "a"), sanitize_id("é" * 150 + "b")
    assert a != b and a.startswith("é" * 90)
    for s in (a, b, sanitize_id("x" * 300)):
        assert len(s.encode("utf-8")) <= MAX_ID_BYTES and check_id(s) == s
    assert sanitize_id("x" * 200) == "x" * 200  # the old limit: such ids do not change


@pytest.mark.parametrize(
    "bad", ["../x", "a/b", "/abs", "-x", ".x", "_x", "a..b", "audio", "x y", "", "é" * 101, "a\x00b", "a\\b", "a:b"]
)
def test_check_id_refuses_path_unsafe_ids(bad):
    with pytest.raises(DataError, match="invalid sample id"):
        check_id(bad)


def test_assign_ids_never_collide_and_do_not_depend_on_order(tmp_path):
    named = [("vlog", tmp_path / "vlogs" / f"p0{i}" / "vlog.mpg") for i in (1, 2, 3)]
    named += [
        ("p 01", tmp_path / "p 01.mp4"),
        ("p_01", tmp_path / "p_01.mp4"),
        ("Clip", tmp_path / "Clip.mp4"),
        ("clip", tmp_path / "x" / "clip.mp4"),
        ("solo", tmp_path / "solo.mp4"),
    ]
    ids = assign_ids(named)
    assert len({i.casefold() for i in ids}) == len(ids)  # distinct, even on a case-insensitive disk
    assert ids[-1] == "solo"
    assert all(i.startswith("vlog-") for i in ids[:3]) and ids[3].startswith("p_01-") and ids[5].startswith("Clip-")
    rev = assign_ids(named[::-1])[::-1]
    assert rev == ids
    # the suffix hashes the shortest distinguishing tail (p01/vlog.mpg): not where the dataset lives
    moved = assign_ids([(n, Path("/elsewhere") / p.relative_to(tmp_path)) for n, p in named[:3]])
    assert moved == ids[:3]


def test_same_named_files_in_several_folders_get_distinct_ids(tmp_path):
    for i in (1, 2, 3):
        (tmp_path / "vlogs" / f"p0{i}").mkdir(parents=True)
        (tmp_path / "vlogs" / f"p0{i}" / "vlog.mpg").write_bytes(b"x")
    folders = [tmp_path / "vlogs" / f"p0{i}" for i in (1, 2, 3)]  # `vlogs/*` as the shell expands it
    ids = [i for i, _, _ in discover_inputs(folders)]
    assert len(set(ids)) == 3, ids
    # the same ids whether the shell expands vlogs/*, the folder is named, or a list names the files
    assert sorted(i for i, _, _ in discover_inputs([tmp_path / "vlogs"])) == sorted(ids)
    assert sorted(i for i, _, _ in discover_inputs([f / "vlog.mpg" for f in folders[::-1]])) == sorted(ids)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"vlogs/p0{i}/vlog.mpg\n" for i in (3, 1, 2)))
    assert sorted(i for i, _, _ in discover_inputs([lst])) == sorted(ids)
    rel = [i for i, _, _ in discover_inputs(folders, id_from="relpath")]
    assert rel == ["p01_vlog", "p02_vlog", "p03_vlog"]


def test_nfc_and_nfd_spellings_and_case_are_two_files_two_ids(tmp_path):
    for n in (NFC_ZOE, NFD_ZOE, "日本 clip", "-dash", "dash", "Clip", "clip"):
        (tmp_path / f"{n}.mp4").write_bytes(b"x")
    names = {f.name for f in tmp_path.iterdir()}
    found = discover_inputs([tmp_path])
    ids = [i for i, _, _ in found]
    assert len(found) == len(names) and len({i.casefold() for i in ids}) == len(ids), ids
    zoe = [i for i in ids if i.startswith(NFC_ZOE)]
    if len(names) == 7:  # a file system that keeps both spellings apart (Linux): two ids, both spelled Zoë (NFC)
        assert len(zoe) == 2 and all(i.startswith(NFC_ZOE + "-") for i in zoe)
    assert "日本_clip" in ids and sum(i.startswith("dash-") for i in ids) == 2


def test_match_labels_by_id_name_or_rule_with_hints():
    inputs = [
        (NFC_ZOE, NFC_ZOE, "v/Zoë.mp4"),
        ("日本_clip", "日本 clip", "v/日本 clip.mp4"),
        ("p_01-aaaaaa", "p 01", "v/p 01.mp4"),
        ("p_01-bbbbbb", "p_01", "v/p_01.mp4"),
        ("vlog-111111", "vlog", "p01/vlog.mp4"),
        ("vlog-222222", "vlog", "p02/vlog.mp4"),
    ]
    table = {
        NFD_ZOE: {"_line": 2},
        "日本 clip": {"_line": 3},
        "p 01": {"_line": 4},
        "p_01": {"_line": 5},
        "vlog-222222": {"_line": 6},
        "old": {"_line": 7},
    }
    got = match_labels(table, inputs, stored={"old"})
    assert {k: v["_line"] for k, v in got.items()} == {
        NFC_ZOE: 2,
        "日本_clip": 3,
        "p_01-aaaaaa": 4,
        "p_01-bbbbbb": 5,
        "vlog-222222": 6,
        "old": 7,
    }
    assert set(match_labels({"Zoë.mp4": {"_line": 2}}, inputs)) == {NFC_ZOE}  # the file name, with extension
    with pytest.raises(DataError, match=r"'Zoe' \(did you mean 'Zoë'\?\)"):
        match_labels({"Zoe": {"_line": 2}}, inputs)
    with pytest.raises(DataError, match="name more than one input.*p01/vlog.mp4.*p02/vlog.mp4"):
        match_labels({"vlog": {"_line": 2}}, inputs)
    with pytest.raises(DataError, match="both name sample"):
        match_labels({NFC_ZOE: {"_line": 2}, NFD_ZOE: {"_line": 3}}, inputs)


# ------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("clip") / "c.mp4"
    write_video(p, with_audio=True, seconds=1.0)
    return p


def _store_ids(out: Path) -> list[str]:
    return sorted(r["id"] for r in map(json.loads, (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()))


def test_extract_vlogs_star_keeps_every_sample(clip, tmp_path, capsys):
    vlogs = tmp_path / "vlogs"
    for i in (1, 2, 3):
        (vlogs / f"p0{i}").mkdir(parents=True)
        shutil.copy(clip, vlogs / f"p0{i}" / "vlog.mp4")
    out = tmp_path / "feats"
    code, so, se = run_cli(
        ["extract", *sorted(vlogs.iterdir()), "-o", out, "--workers", "1", "--allow-partial"], capsys
    )
    assert code == 0, se
    ids = _store_ids(out)
    assert len(ids) == 3 and all(i.startswith("vlog-") for i in ids), ids
    assert "3 partial" in so
    sources = {json.loads((out / i / f"{i}_record.json").read_text())["source"]["path"] for i in ids}
    assert sources == {f"p0{i}/vlog.mp4" for i in (1, 2, 3)}
    # relpath: the folder names are the ids
    out2 = tmp_path / "feats2"
    code, so, se = run_cli(
        ["extract", *sorted(vlogs.iterdir()), "-o", out2, "--workers", "1", "--allow-partial", "--id-from", "relpath"],
        capsys,
    )
    assert code == 0, se
    assert _store_ids(out2) == ["p01_vlog", "p02_vlog", "p03_vlog"]
    # the same videos again under the other ids, into the first folder: refused before any work
    before = sorted(p.name for p in out.iterdir())
    code, so, se = run_cli(
        ["extract", *sorted(vlogs.iterdir()), "-o", out, "--workers", "1", "--allow-partial", "--id-from", "relpath"],
        capsys,
    )
    msg = " ".join(se.split())
    assert code == 1 and "3 input(s) are already in the folder under another sample id" in msg, se
    assert "this run's id: 'p01_vlog'" in msg and "--id-from" in msg
    assert sorted(p.name for p in out.iterdir()) == before
    # rerun with the folder's own rule: everything skipped
    code, so, se = run_cli(
        ["extract", *sorted(vlogs.iterdir()), "-o", out, "--workers", "1", "--allow-partial"], capsys
    )
    assert code == 0 and "3 skipped" in so, se


def test_extract_unicode_and_dash_names_with_labels_on_real_names(clip, tmp_path, capsys):
    src = tmp_path / "videos"
    src.mkdir()
    names = [f"{NFC_ZOE}.mp4", "日本 clip.mp4", "-dash.mp4", "p 01.mp4", "p_01.mp4"]
    for n in names:
        shutil.copy(clip, src / n)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        f"index,label\n{NFD_ZOE},depression\n日本 clip,normal\n-dash,normal\np 01,depression\np_01,normal\n",
        encoding="utf-8",
    )
    out = tmp_path / "feats"
    code, _, se = run_cli(["extract", src, "-o", out, "--workers", "1", "--allow-partial", "--labels", labels], capsys)
    assert code == 0, se
    ids = _store_ids(out)
    assert len(ids) == 5, ids
    assert NFC_ZOE in ids and "日本_clip" in ids and "dash" in ids
    p01 = [i for i in ids if i.startswith("p_01-")]
    assert len(p01) == 2
    rows = {r["index"]: r["label"] for r in csv.DictReader((out / "labels.csv").open(encoding="utf-8"))}
    assert rows[NFC_ZOE] == "depression" and rows["日本_clip"] == "normal" and rows["dash"] == "normal"
    by_source = {json.loads((out / i / f"{i}_record.json").read_text())["source"]["path"]: i for i in p01}
    assert rows[by_source["videos/p 01.mp4"]] == "depression" and rows[by_source["videos/p_01.mp4"]] == "normal"
    # a near miss in the labels file: one line naming it, with a hint; nothing written
    bad = tmp_path / "bad.csv"
    bad.write_text("index,label\nZoe,depression\n", encoding="utf-8")
    code, _so, se = run_cli(
        ["extract", src, "-o", tmp_path / "feats_bad", "--workers", "1", "--allow-partial", "--labels", bad], capsys
    )
    assert code == 1 and "did you mean 'Zoë'" in " ".join(se.split())
    assert not (tmp_path / "feats_bad" / "manifest.jsonl").exists()


def test_a_dash_file_named_alone_is_read_as_a_file(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(clip, tmp_path / "-dash.mp4")
    code, _, se = run_cli(["extract", "-dash.mp4", "-o", "feats", "--workers", "1", "--allow-partial"], capsys)
    assert code == 0, se
    assert "read as the file ./-dash.mp4" in " ".join(se.split())
    assert _store_ids(tmp_path / "feats") == ["dash"]
    # a name like a file that does not exist: refused with the fix, not parsed as `-d ash.mp4`
    code, _, se = run_cli(["predict", "-dish.mp4", "-c", "x.pt"], capsys)
    assert code == 1 and "no such file '-dish.mp4'" in se and "./-dish.mp4" in " ".join(se.split())
    # known options are untouched even when a file of that name exists
    (tmp_path / "-o").write_bytes(b"")
    code, _so, se = run_cli(["extract", "-dash.mp4", "-o", "feats", "--workers", "1", "--allow-partial"], capsys)
    assert code == 0, se


def test_predict_help_lists_id_from(capsys):
    code, so, _ = run_cli(["predict", "--help"], capsys)
    assert code == 0 and "--id-from" in so


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny fusion_concat on synthetic D-Vlog-spec data (eGeMAPS + landmarks at 1 row/s)."""
    import torch

    from depdet.pipeline.data.datasets import load_dataset
    from depdet.pipeline.data.synth import SynthConfig, make_synthetic
    from depdet.pipeline.training.config import TrainConfig
    from depdet.pipeline.training.runs import train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    make_synthetic(root / "data", SynthConfig(layout="dvlog", n=24, signal=3.0, seed=0, min_len=4, max_len=8))
    cfg = TrainConfig(
        model="fusion_concat",
        model_config={"hidden": 8, "d": 8},
        lr=3e-3,
        batch_size=8,
        epochs=1,
        seeds=[0],
        device="cpu",
        amp=False,
        select="loss",
    )
    try:
        return Path(train(load_dataset(root / "data"), cfg, root / "run")["checkpoint"])
    finally:
        torch.set_num_threads(n)


def test_predict_id_from_relpath_and_source(clip, checkpoint, tmp_path, capsys):
    vlogs = tmp_path / "vlogs"
    for i in (1, 2):
        (vlogs / f"p0{i}").mkdir(parents=True)
        shutil.copy(clip, vlogs / f"p0{i}" / "vlog.mp4")
    args = [
        "predict",
        *sorted(vlogs.iterdir()),
        "-c",
        checkpoint,
        "--allow-partial",
        "--no-evidence",
        "--device",
        "cpu",
    ]
    code, _, se = run_cli([*args, "--id-from", "relpath", "--out", tmp_path / "r.json"], capsys)
    assert code == 0, se
    doc = json.loads((tmp_path / "r.json").read_text())
    got = {r["id"]: r["source"] for r in doc["results"]}
    assert got == {f"p0{i}_vlog": str((vlogs / f"p0{i}" / "vlog.mp4").resolve()) for i in (1, 2)}
    code, _so, se = run_cli([*args, "--out", tmp_path / "r.csv"], capsys)  # stem: distinct too
    assert code == 0, se
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    assert len({r["id"] for r in rows}) == 2 and all(r["id"].startswith("vlog-") for r in rows)
    assert sorted(r["source"] for r in rows) == sorted(got.values())
