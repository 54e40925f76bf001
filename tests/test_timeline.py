"""One presentation timeline: the placement and truncation rule."""

from __future__ import annotations

import numpy as np
import pytest

from depdet.errors import ConfigError
from depdet.extractors.base import StreamFeatures
from depdet.pipeline.features.timeline import RULES, align, first_row, place, split_start

SR = 16000


# ------------------------------------------------------------------------------- the rule itself
def sf(T, D=2, fps=1.0, valid=None):
    return StreamFeatures(np.arange(1, T * D + 1, dtype=np.float32).reshape(T, D),
                          np.ones(T, bool) if valid is None else valid, fps)


def test_common_keeps_rows_up_to_the_shortest_end():
    r = align({"audio": sf(7, fps=2.0), "visual": sf(5, 3, fps=2.0)})
    assert r.rule == "common" and r.T == 5 and r.fps == 2.0
    assert r.lengths == {"audio": 7, "visual": 5}
    assert r.dropped == {"audio": 2, "visual": 0} and r.dropped_s == {"audio": 1.0, "visual": 0.0}
    np.testing.assert_array_equal(r.values["audio"], sf(7).values[:5])
    assert r.valid["audio"].all() and r.valid["visual"].all()


def test_union_pads_the_shorter_streams_with_invalid_rows():
    r = align({"audio": sf(7, fps=2.0), "visual": sf(5, 3, fps=2.0)}, rule="union")
    assert r.rule == "union" and r.T == 7
    assert r.dropped == {"audio": 0, "visual": 0} and r.dropped_s == {"audio": 0.0, "visual": 0.0}
    assert r.values["visual"].shape == (7, 3) and (r.values["visual"][5:] == 0).all()
    assert r.valid["visual"].tolist() == [True] * 5 + [False] * 2
    np.testing.assert_array_equal(r.values["visual"][:5], sf(5, 3).values)
    np.testing.assert_array_equal(r.values["audio"], sf(7).values)


def test_rules_agree_when_lengths_do_and_reject_unknown_names():
    s = {"audio": sf(4), "visual": sf(4, 3)}
    for rule in RULES:
        r = align(s, rule=rule)
        assert r.T == 4 and r.dropped == {"audio": 0, "visual": 0}
    with pytest.raises(ConfigError, match="union"):
        align(s, rule="shortest")
    with pytest.raises(ValueError, match="different rates"):
        align({"audio": sf(4, fps=1.0), "visual": sf(4, fps=5.0)}, rule="union")


def test_first_row_is_the_first_row_mostly_after_the_start():
    assert first_row(0.0, 5) == 0
    assert first_row(2.0, 5) == 10
    assert first_row(2.0 - 1024 / SR, 5) == 10  # row 9 ([1.8, 2.0) s) has sound for only 0.064 s
    assert first_row(1.9, 5) == 9  # exactly half of row 9: it counts
    assert first_row(0.03, 25) == 1 and first_row(0.03, 1) == 0
    assert first_row(2.4, 1) == 2 and first_row(2.6, 1) == 3


def test_split_start_into_whole_rows_and_a_remainder():
    assert split_start(0.0, 5) == (0, 0.0)
    assert split_start(2.0, 5) == (10, 0.0)
    rows, rest = split_start(2.0 - 1024 / SR, 5)
    assert rows == 9 and rest == pytest.approx(0.136)
    rows, rest = split_start(2.4, 1)
    assert rows == 2 and rest == pytest.approx(0.4)


def test_place_prepends_whole_rows_and_invalidates_rows_before_the_start():
    s = sf(4)
    p = place(s, 2.0, offset_rows=2)  # whole-row start: rows 0-1 are empty, the rest is the stream moved
    assert len(p) == 6 and p.valid.tolist() == [False, False, True, True, True, True]
    assert (p.values[:2] == 0).all()
    np.testing.assert_array_equal(p.values[2:], s.values)
    q = place(s, 2.7, offset_rows=2)  # 0.7 s into row 2: row 2 (the stream's own row 0) is mostly empty
    assert q.valid.tolist() == [False, False, False, True, True, True]
    assert (q.values[:3] == 0).all()
    np.testing.assert_array_equal(q.values[3:], s.values[1:])
    assert place(s, 0.0) is not s and place(s, 0.0).valid.tolist() == s.valid.tolist()
    assert place(sf(0), 3.0, offset_rows=3).valid.tolist() == [False] * 3
