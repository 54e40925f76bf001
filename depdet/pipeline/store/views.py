"""The store's views, computed from the sample records: the manifest row of a record, the extractor
versions a folder's usable samples were made with, and the note when they are mixed.
"""

from __future__ import annotations

USABLE = ("ok", "partial")


def extractor_versions(records: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Extractor name -> version -> how many usable samples were made with it (from the records)."""
    out: dict[str, dict[str, int]] = {}
    for r in records.values():
        if r.get("status") not in USABLE:
            continue
        for name, d in (r.get("extractors") or {}).items():
            v = str((d or {}).get("version"))
            out.setdefault(name, {})
            out[name][v] = out[name].get(v, 0) + 1
    return out


def mixed_versions_note(versions: dict[str, dict[str, int]]) -> str | None:
    """One line when a folder's samples were made by different versions of an extractor (None: they were not)."""
    mixed = {n: vs for n, vs in versions.items() if len(vs) > 1}
    if not mixed:
        return None
    parts = [
        f"{n} " + ", ".join(f"version {v} in {k} sample(s)" for v, k in sorted(vs.items()))
        for n, vs in sorted(mixed.items())
    ]
    return (
        "this folder mixes features made by different extractor versions ("
        + "; ".join(parts)
        + "): their values are not comparable; rerun `depdet extract` on the folder's videos to redo the old ones"
    )


def manifest_row(rec: dict) -> dict:
    """The manifest view of one record: provenance in one line (arrays' hashes included)."""
    src = rec.get("source") or {}
    keys = (
        "id",
        "status",
        "error",
        "duration",
        "fps",
        "T",
        "dims",
        "face_ratio",
        "speech_ratio",
        "missing",
        "warnings",
        "meta",
    )
    row = {k: rec.get(k) for k in keys}
    row.update(
        {
            "source": src.get("path"),
            "resolved": src.get("resolved"),
            "size": src.get("size"),
            "sha256": src.get("sha256"),
            "record": None,
        }
    )
    row["timeline"] = rec.get("timeline")
    row["extractors"] = {n: (d or {}).get("version") for n, d in (rec.get("extractors") or {}).items()}
    row["files"] = {m: f["path"] for m, f in (rec.get("files") or {}).items()}
    row["files_sha256"] = {m: f["sha256"] for m, f in (rec.get("files") or {}).items()}
    row["seconds"] = (rec.get("timings") or {}).get("total_s")
    row["depdet_version"] = rec.get("depdet_version")
    return {k: v for k, v in row.items() if k != "record"}
