"""Sample ids: the one rule that turns a file's name into an id, and the one check of what the store accepts.

The rule (depdet's choice, not from a paper), used by ``depdet extract``, ``depdet predict`` and the
labels matcher alike (:func:`sanitize_id`):

1. the name is NFC-normalised (``Zoë`` typed or listed as ``Zoe`` + combining diaeresis is one id);
2. letters, combining marks and digits of **any script** are kept, with their case, as are ``.``, ``_``,
   ``-`` (and the zero-width joiners some scripts need inside words); every run of other characters
   (spaces, punctuation, symbols, path separators, ``/ \\ : * ? " < > |``, control characters) becomes
   one ``_``; a run of two or more dots becomes ``_`` too (``..`` is never part of an id);
3. leading characters other than a letter or digit (``-``, ``.``, ``_``, a mark) are dropped, and
   trailing ``.``/``_`` too, so an id never starts with ``-`` (an option) or ``.`` (a hidden file);
   an empty result is ``clip``;
4. a name whose first dot-separated part is a layout folder (``audio``, ``visual``, ``valid``,
   ``records``, ``label``, exactly) or a Windows device name (``CON``, ``NUL``, ``COM1``..., any case)
   gets ``_`` after that part (``audio`` -> ``audio_``, ``con.x`` -> ``con_.x``);
5. a result longer than :data:`MAX_ID_BYTES` UTF-8 bytes is cut (at a character boundary) and
   ends in ``-`` + 6 hex of the SHA-1 of the full name, so two long names stay apart.

For ASCII names this is the rule depdet had before (everything but ``A-Za-z0-9._-`` -> ``_``), so their
ids do not change, except names it could not store at all (a leading ``-``, ``..``, ``audio``) and Windows
device names (``CON`` is ``CON_`` now: such a folder cannot be copied to Windows); names
with other letters keep them now (``Zoë`` was ``Zo``, ``日本 clip`` was ``clip``).

Two inputs of one run never share an id (:func:`assign_ids`): ids equal after case folding (one file
on a case-insensitive disk) get a suffix ``-`` + 6 hex of the SHA-1 of the shortest trailing part of
their paths that tells them apart (``p01/vlog.mpg`` vs ``p02/vlog.mpg``), which depends neither on the
order the files were listed in nor on where the dataset folder lives.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from depdet.errors import DataError

#: Longest id, in UTF-8 bytes (the limit the store always had for ASCII ids: ``.<id>_acoustic.npy.<tmp>``
#: staging names stay under the 255-byte file-name limit of Linux, macOS and Windows file systems).
MAX_ID_BYTES = 200
#: Names an id may not take: they are folders of the layouts.
RESERVED_IDS = frozenset({"audio", "visual", "valid", "records", "label"})
#: Windows device names (reserved as a file name's part before the first dot, in any case).
WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
)
_JOINERS = "\u200c\u200d"  # zero-width non-joiner / joiner: part of words in Persian, Indic scripts...
_HASH = 6


def _kept(ch: str) -> bool:
    """A character an id keeps: a letter, mark or digit of any script, ``._-`` or a joiner."""
    return ch in "._-" or ch in _JOINERS or unicodedata.category(ch)[0] in "LMN"


def _starts(ch: str) -> bool:
    """A character an id may start with: a letter or digit."""
    return unicodedata.category(ch)[0] in "LN"


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:_HASH]


def _with_suffix(sid: str, suffix: str) -> str:
    """``<sid>-<suffix>``, ``sid`` cut at a character boundary so that the whole fits :data:`MAX_ID_BYTES`."""
    room = MAX_ID_BYTES - 1 - len(suffix)
    head = sid.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip("._-" + _JOINERS)
    return f"{head}-{suffix}"


def _cut(sid: str, full: str) -> str:
    return sid if len(sid.encode("utf-8")) <= MAX_ID_BYTES else _with_suffix(sid, _short_hash(full))


def sanitize_id(name: str) -> str:
    """The sample id of a name (a file stem, or a relative path without extension): see the module docstring.

    Examples: ``Zoë`` -> ``Zoë``; ``日本 clip`` -> ``日本_clip``; ``p01/vlog`` -> ``p01_vlog``;
    ``-dash`` -> ``dash``; ``0602`` -> ``0602``; ``a..b`` -> ``a_b``.
    """
    text = unicodedata.normalize("NFC", str(name))
    s = "".join(ch if _kept(ch) else "\0" for ch in text)
    s = re.sub(r"\.{2,}", "\0", s)
    s = re.sub(r"\0+", "_", s)
    i = 0
    while i < len(s) and not _starts(s[i]):
        i += 1
    s = s[i:].rstrip("._" + _JOINERS)
    if not s:
        return "clip"
    first, dot, rest = s.partition(".")
    if first in RESERVED_IDS or first.casefold() in WINDOWS_DEVICES:
        s = f"{first}_{dot}{rest}"
    return _cut(s, text)


def check_id(sample_id: str, *, where=None) -> str:
    """What the store accepts as an id: a plain file name that keeps every file of a sample inside its folder.

    Letters, marks and digits of any script and ``._-`` (and joiners), starting with a letter or digit,
    no ``..``, at most :data:`MAX_ID_BYTES` UTF-8 bytes, not a layout folder name. Every id
    :func:`sanitize_id` makes passes, and so does every id depdet accepted before (ASCII
    ``[A-Za-z0-9][A-Za-z0-9._-]*``); ``../x``, ``a/b``, absolute paths, ``-x``, ``.x`` do not.

    Raises:
        DataError: the id is not acceptable.
    """
    ok = (
        isinstance(sample_id, str)
        and sample_id
        and _starts(sample_id[0])
        and all(map(_kept, sample_id))
        and ".." not in sample_id
        and sample_id not in RESERVED_IDS
        and len(sample_id.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in sample_id)
    )
    if not ok:
        raise DataError(
            f"invalid sample id {sample_id!r}",
            path=where,
            hint="ids are file names of letters and digits (any script) and ._-, starting with a letter "
            f"or digit, at most {MAX_ID_BYTES} bytes (not audio/visual/valid/records/label)",
        )
    return sample_id


def _tail_key(path: Path, k: int) -> str:
    parts = Path(os.path.abspath(path)).parts
    return "/".join(parts[-k:])


def _disambiguate(paths: Sequence[Path]) -> list[str]:
    """For files whose ids collide: the shortest trailing part of their (absolute) paths, one length for all,
    that tells them all apart (``p01/vlog.mpg`` vs ``p02/vlog.mpg``)."""
    longest = max(len(Path(os.path.abspath(p)).parts) for p in paths)
    for k in range(1, longest + 1):
        keys = [_tail_key(p, k) for p in paths]
        if len(set(keys)) == len(keys):
            return keys
    return [Path(os.path.abspath(p)).as_posix() for p in paths]  # not reached: distinct files have distinct paths


def assign_ids(named: Iterable[tuple[str, Path]]) -> list[str]:
    """Ids for (name, path) pairs of one run, in the same order; no two are equal, even ignoring case.

    Each id is ``sanitize_id(name)``; ids that would be equal after case folding get
    ``-<6 hex of SHA-1 of the shortest distinguishing path tail>`` (see the module docstring), the same
    whatever order the files come in.

    Raises:
        DataError: two files would still share an id (a hash collision or a file literally named like
            another's suffixed id): names both, before any work.
    """
    named = list(named)
    base = [sanitize_id(n) for n, _ in named]
    groups: dict[str, list[int]] = {}
    for i, b in enumerate(base):
        groups.setdefault(b.casefold(), []).append(i)
    ids = list(base)
    for members in groups.values():
        if len(members) < 2:
            continue
        keys = _disambiguate([named[i][1] for i in members])
        for i, key in zip(members, keys):
            ids[i] = _with_suffix(base[i], _short_hash(key))
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        j = seen.setdefault(sid.casefold(), i)
        if j != i:
            raise DataError(
                f"two inputs would get the same sample id {sid!r}: {named[j][1]} and {named[i][1]}",
                hint="rename one of the files (or use --id-from relpath)",
            )
    return ids


def suggest(key: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``key`` among ``candidates`` ("did you mean ..."), compared NFC and case-folded."""
    cands = sorted(set(candidates))
    folded: dict[str, list[str]] = {}
    for c in cands:
        folded.setdefault(unicodedata.normalize("NFC", c).casefold(), []).append(c)
    hits = difflib.get_close_matches(unicodedata.normalize("NFC", key).casefold(), list(folded), n=n, cutoff=0.6)
    return [c for h in hits for c in folded[h]][:n]
