"""Half-overlapping windows of long texts, and one prediction per text from its windows."""

from __future__ import annotations

import numpy as np
import pytest

from gptcls.classifier.windows import reduce_windows, split_windows, whole_texts, windows


def test_a_short_text_is_one_window_and_a_long_one_half_overlapping_windows():
    assert windows([1, 2, 3], 4) == [[1, 2, 3]]
    seq = list(range(10))
    parts = windows(seq, 4)  # starts 0, 2, 4, then 6 (the last ends at the end)
    assert parts == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert all(len(p) == 4 for p in parts)


def test_split_windows_keeps_texts_in_order_and_names_the_text_of_each_window():
    chunks, owner = split_windows([[1, 2], list(range(10)), [7]], 4)
    assert len(chunks) == 1 + 4 + 1 and owner == [0, 1, 1, 1, 1, 2]
    assert chunks[0] == [1, 2] and chunks[-1] == [7]


def test_mean_and_max_reduce_to_one_row_per_text():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.5, 0.5]], dtype=np.float32)
    owner = [0, 0, 0, 1]
    mean = reduce_windows(probs, owner, 2)
    np.testing.assert_allclose(mean, [[0.5, 0.5], [0.5, 0.5]], atol=1e-6)
    top = reduce_windows(probs, owner, 2, "max")  # (0.9, 0.8) renormalised
    np.testing.assert_allclose(top[0], [0.9 / 1.7, 0.8 / 1.7], atol=1e-6)
    multi = reduce_windows(probs, owner, 2, "max", multi_label=True)  # no renormalising
    np.testing.assert_allclose(multi[0], [0.9, 0.8], atol=1e-6)


def test_unscored_windows_are_left_out_and_a_text_without_any_stays_nan():
    probs = np.array([[0.9, 0.1], [np.nan, np.nan], [np.nan, np.nan]])
    out = reduce_windows(probs, [0, 0, 1], 2)
    np.testing.assert_allclose(out[0], [0.9, 0.1], atol=1e-6)
    assert np.isnan(out[1]).all()


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 3), (3, 3), (4, 4), (5, 6), (99, 6)])
def test_whole_texts_extends_a_prefix_to_the_end_of_its_last_text(n, expected):
    assert whole_texts([0, 0, 0, 1, 2, 2], n) == expected
