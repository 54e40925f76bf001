"""The label vocabulary and the one parser of label tables (users' ``--labels`` CSVs, ``labels.csv``).

Classes: 1 = depressed, 0 = normal. Accepted spellings (case-insensitive):

* depressed: ``1``, ``depression``, ``depressed``, ``d``, ``true``, ``yes`` (and ``1.0``)
* normal: ``0``, ``normal``, ``n``, ``false``, ``no``, ``control``, ``healthy`` (and ``0.0``)
* empty: no label given. Where a label is already stored (``depdet extract --labels`` on a folder
  that has the sample) an empty cell leaves the stored label as it is, and the run says so;
* :data:`ERASE` (``-``): no label, explicitly: erases a stored label (depdet's spelling). The same
  two rules hold for the gender and fold cells.

Written back in each layout's own convention (:func:`format_label`): D-Vlog ``depression``/``normal``,
LMVD ``1``/``0``. Gender: ``f``/``m`` (``female``/``male``/``w``/``woman``/``man`` accepted) or empty.
Fold: ``train``/``valid``/``test`` (``val``, ``dev``, ``validation`` mean ``valid``) or empty.
Group: any text (the person or channel a clip belongs to; kept as written, stripped) or empty; grouped
splits keep a group's clips together (splits.py).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from depdet.errors import DataError
from depdet.ids import sanitize_id, suggest

POSITIVE = frozenset({"1", "1.0", "depression", "depressed", "d", "true", "yes"})
NEGATIVE = frozenset({"0", "0.0", "normal", "n", "false", "no", "control", "healthy"})
#: The cell value that erases a stored label, gender or fold (an empty cell keeps it; depdet's choice).
ERASE = "-"
FOLDS = ("train", "valid", "test")
_FOLD_ALIASES = {"val": "valid", "dev": "valid", "validation": "valid", "training": "train", "testing": "test"}
_GENDER_ALIASES = {"f": "f", "female": "f", "w": "f", "woman": "f", "m": "m", "male": "m", "man": "m"}
#: The user-metadata fields a sample record keeps (``meta``), in labels.csv column order.
META_FIELDS = ("label", "gender", "fold", "group")
#: Fields a record's ``meta`` holds only when set (records without a group stay as before).
OPTIONAL_META = ("group",)


def record_meta(values: dict) -> dict:
    """A record's ``meta``: every :data:`META_FIELDS` value, the optional ones only when non-empty."""
    return {k: values.get(k) for k in META_FIELDS if k not in OPTIONAL_META or values.get(k)}


def parse_label(value: str | int | None) -> int | None:
    """``depression``/``normal``/``1``/``0`` (see module docstring) -> 1/0; empty -> None; else ValueError."""
    v = "" if value is None else str(value).strip().lower()
    if v in ("", ERASE):
        return None
    if v in POSITIVE:
        return 1
    if v in NEGATIVE:
        return 0
    raise ValueError(f"unknown label {value!r}")


def parse_gender(value: str | None) -> str:
    v = (value or "").strip().lower()
    if v in ("", ERASE):
        return ""
    if v in _GENDER_ALIASES:
        return _GENDER_ALIASES[v]
    raise ValueError(f"unknown gender {value!r}")


def parse_fold(value: str | None) -> str:
    v = (value or "").strip().lower()
    v = _FOLD_ALIASES.get(v, v)
    if v == ERASE:
        return ""
    if v in ("",) + FOLDS:
        return v
    raise ValueError(f"unknown fold {value!r}")


def format_label(label: int | None, layout: str) -> str:
    """A label in ``layout``'s convention (D-Vlog: depression/normal; LMVD: 1/0; None: empty)."""
    if label is None:
        return ""
    if layout == "dvlog":
        return "depression" if label else "normal"
    return "1" if label else "0"


def read_label_table(path: str | Path, *, require_label: bool = True) -> dict[str, dict]:
    """Read and validate a labels CSV: id -> ``{"label": 1|0|None, "gender": str, "fold": str, "_line": n}``.

    A label, gender or fold cell that is empty is left out of the row and named in ``"_empty"`` (a
    list): "not given", so a stored value is kept (:func:`merge_meta`); :data:`ERASE` gives the key
    with no value (None / ""), which erases a stored one.

    The header needs an ``index`` (or ``id``) column and, when ``require_label``, a ``label``
    column; ``gender``, ``fold`` and ``group`` are optional (every other column is kept as text). Ids stay strings (LMVD's ``0602`` is not ``602``).
    Every bad row is collected first, then one DataError lists them all (line numbers and values).

    Raises:
        DataError: unreadable or empty file, missing header columns, unknown classes, genders or
            folds, duplicated ids.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read labels file ({e.strerror})", path=path) from e
    if not text.strip():
        raise DataError("labels file is empty", path=path, hint="it needs a header like index,label,gender,fold")
    reader = csv.DictReader(io.StringIO(text))
    fields = [(f or "").strip().lower() for f in (reader.fieldnames or [])]
    key = "index" if "index" in fields else "id" if "id" in fields else None
    if key is None:
        raise DataError(
            f"labels file has no 'index' column (header: {','.join(fields)})",
            path=path,
            hint="first line should be index,label,duration,gender,fold (D-Vlog) or index,label,fold (LMVD)",
        )
    if require_label and "label" not in fields:
        raise DataError(
            f"labels file has no 'label' column (header: {','.join(fields)})",
            path=path,
            hint="add a label column (depression/normal or 1/0)",
        )
    rows: dict[str, dict] = {}
    bad: list[str] = []
    for n, raw in enumerate(reader, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        sid = row.get(key, "")
        if not sid:
            if any(row.values()):
                bad.append(f"line {n}: empty id")
            continue
        if sid in rows:
            bad.append(f"line {n}: id {sid!r} appears twice (first on line {rows[sid]['_line']})")
            continue
        entry: dict = {"_line": n, "_empty": []}
        for name, parse in (("label", parse_label), ("gender", parse_gender), ("fold", parse_fold)):
            if name in row and row[name] == "":
                entry["_empty"].append(name)
            elif name in row:
                try:
                    entry[name] = parse(row[name])
                except ValueError as e:
                    bad.append(f"line {n} ({sid}): {e}")
        entry.update({k: v for k, v in row.items() if k not in (key, "label", "gender", "fold")})
        rows[sid] = entry
    if bad:
        raise DataError(
            f"{len(bad)} bad row(s): " + "; ".join(bad[:8]) + (f"; and {len(bad) - 8} more" if len(bad) > 8 else ""),
            path=path,
            hint="labels are depression/normal or 1/0, gender f/m, fold train/valid/test; one row per id",
        )
    if not rows:
        raise DataError("labels file has a header but no rows", path=path, hint="add one row per sample")
    return rows


def merge_meta(old: dict | None, row: dict | None) -> tuple[dict, list[str]]:
    """A sample's stored metadata ``old`` updated by one ``--labels`` row (:func:`read_label_table`).

    A field the row gives replaces the stored one (:data:`ERASE` gives it as no value); a field the
    row leaves empty, or whose column the file lacks, keeps the stored value.

    Returns:
        (the merged metadata, the fields whose stored value an empty cell kept).
    """
    old = old or {}
    row = row or {}
    merged = record_meta({k: row[k] if k in row else old.get(k) for k in META_FIELDS})
    kept = [k for k in row.get("_empty", ()) if old.get(k) not in (None, "")]
    return merged, kept


def read_lmvd_label_dir(folder: str | Path) -> dict[str, dict]:
    """LMVD's per-id label files ``<id>_Depression.csv`` / ``<id>_Normal.csv``, as :func:`read_label_table` rows.

    Each file's single line is the label (0/1), as the LMVD code reads it; when the file is empty
    the name decides (``_Normal`` -> 0, ``_Depression`` -> 1).
    """
    import re

    folder = Path(folder)
    pat = re.compile(r"^(?P<id>.+?)_(?P<kind>depression|normal)\.csv$", re.I)
    rows: dict[str, dict] = {}
    for f in sorted(folder.glob("*.csv")):
        m = pat.match(f.name)
        if not m:
            continue
        text = f.read_text(encoding="utf-8-sig").strip()
        first = text.splitlines()[0].split(",")[0].strip() if text else ""
        try:
            label = parse_label(first) if first else (1 if m["kind"].lower() == "depression" else 0)
        except ValueError as e:
            raise DataError(f"line 1: {e}", path=f, hint="the file's one line is 1 or 0") from e
        rows[m["id"]] = {"label": label, "gender": "", "fold": "", "_line": 1}
    if not rows:
        raise DataError(
            "no <id>_Depression.csv / <id>_Normal.csv files found",
            path=folder,
            hint="point --data at the LMVD folder that holds label/ or provide labels.csv",
        )
    return rows


def match_labels(
    table: dict[str, dict],
    inputs: Iterable[tuple[str, str, str]],
    stored: Iterable[str] = (),
    *,
    where: str | Path | None = None,
) -> dict[str, dict]:
    """Key a labels table (:func:`read_label_table`) by sample id: which sample each ``index`` means.

    The matcher of ``depdet extract --labels`` (depdet's rule, the id rule of :mod:`~depdet.ids`).
    A labels-file id ``k`` (NFC-normalised) names, in this order:

    1. the sample whose id is ``k`` (an input of this run, or a sample already in the folder);
    2. the input whose name is ``k``: its file stem (``Zoë``, ``日本 clip``), or with ``--id-from relpath``
       its relative path without extension (``p01/vlog``); also with the file's extension (``Zoë.mp4``);
    3. the input or stored sample whose id ``sanitize_id(k)`` is (before any collision suffix).

    Args:
        table: the labels rows, keyed as written in the file.
        inputs: ``(id, name, source)`` of this run's inputs (``name``: what the id was made from;
            ``source``: the path, for messages).
        stored: ids already in the folder.
        where: the labels file (for messages).

    Returns:
        The rows keyed by sample id.

    Raises:
        DataError: ids that match nothing (with "did you mean" hints), that match several inputs
            (same-named files: key them by their ids or use ``--id-from relpath``), or two rows that
            name one sample; all listed at once, before any work.
    """
    inputs = list(inputs)
    stored = set(stored)
    by_id = {sid for sid, _, _ in inputs} | stored
    by_name: dict[str, list[int]] = {}
    by_base: dict[str, list[str]] = {}
    for i, (sid, name, source) in enumerate(inputs):
        for n in {unicodedata.normalize("NFC", name), unicodedata.normalize("NFC", Path(str(source)).name)}:
            by_name.setdefault(n, []).append(i)
        by_base.setdefault(sanitize_id(name), []).append(sid)
    for sid in stored:
        by_base.setdefault(sid, []).append(sid)
    out: dict[str, dict] = {}
    first: dict[str, str] = {}
    unknown: list[str] = []
    ambiguous: list[str] = []
    twice: list[str] = []
    for key, row in table.items():
        k = unicodedata.normalize("NFC", key)
        if k in by_id:
            sid = k
        elif k in by_name:
            hits = sorted(set(by_name[k]))
            if len(hits) > 1:
                ambiguous.append(
                    f"line {row['_line']}: {key!r} is the name of "
                    + " and ".join(f"{inputs[i][2]} (id {inputs[i][0]})" for i in hits[:3])
                    + (" and more" if len(hits) > 3 else "")
                )
                continue
            sid = inputs[hits[0]][0]
        else:
            sids = sorted(set(by_base.get(sanitize_id(k), ())))
            if len(sids) > 1:
                ambiguous.append(f"line {row['_line']}: {key!r} matches the ids " + ", ".join(sids[:3]))
                continue
            if not sids:
                near = suggest(k, [*by_id, *(inputs[i][1] for i in range(len(inputs)))])
                unknown.append(
                    f"line {row['_line']}: {key!r}"
                    + (f" (did you mean {' or '.join(map(repr, near))}?)" if near else "")
                )
                continue
            sid = sids[0]
        if sid in out:
            twice.append(
                f"lines {out[sid]['_line']} ({first[sid]!r}) and {row['_line']} ({key!r}) both name sample {sid!r}"
            )
            continue
        out[sid], first[sid] = row, key
    problems = []
    if unknown:
        problems.append(
            f"{len(unknown)} id(s) in the labels file match no input and no sample of the folder: "
            + ", ".join(unknown[:8])
            + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        )
    if ambiguous:
        problems.append(
            f"{len(ambiguous)} id(s) name more than one input: "
            + "; ".join(ambiguous[:4])
            + (f"; and {len(ambiguous) - 4} more" if len(ambiguous) > 4 else "")
        )
    if twice:
        problems.append("; ".join(twice[:4]) + (f"; and {len(twice) - 4} more" if len(twice) > 4 else ""))
    if problems:
        raise DataError(
            "; ".join(problems),
            path=where,
            hint="key rows by the sample ids `depdet extract` prints, or by the file names (stems; with "
            "--id-from relpath the relative paths, e.g. p01/vlog); same-named files in different "
            "folders: use --id-from relpath",
        )
    return out
