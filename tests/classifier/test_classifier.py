"""`Classifier.predict` and `predict_proba` take one string (one answer) or a list (as before)."""

from __future__ import annotations

import numpy as np
import pytest

from gptcls.classifier.classifier import Classifier
from gptcls.errors import GptclsError


@pytest.fixture(scope="module")
def clf(tiny_clf) -> Classifier:
    return tiny_clf


@pytest.fixture(scope="module")
def texts(tiny_test_texts) -> list[str]:
    return tiny_test_texts[:6]


def test_one_string_gives_one_label(clf, texts):
    labels = clf.predict(texts)
    assert isinstance(labels, list) and len(labels) == len(texts)
    for text, label in zip(texts, labels, strict=True):
        one = clf.predict(text)
        assert isinstance(one, str) and one == label


@pytest.mark.parametrize("long_text", ["truncate", "chunk"])
def test_one_string_gives_a_1d_probability_row(clf, texts, long_text):
    many = clf.predict_proba(texts, long_text)
    assert many.shape == (len(texts), len(clf.labels))
    for i, text in enumerate(texts):
        one = clf.predict_proba(text, long_text)
        assert one.shape == (len(clf.labels),)
        np.testing.assert_allclose(one, many[i], atol=1e-5)
        assert one.sum() == pytest.approx(1.0, abs=1e-5)


def test_a_list_of_one_still_gives_a_list_and_a_2d_array(clf, texts):
    assert clf.predict(texts[:1]) == [clf.predict(texts[0])]
    assert clf.predict_proba(texts[:1]).shape == (1, len(clf.labels))


def test_an_empty_single_string_is_a_clear_error(clf):
    with pytest.raises(GptclsError, match="text 1 is empty"):
        clf.predict("   ")
    with pytest.raises(GptclsError, match="text 1 is empty"):
        clf.predict_proba("")
