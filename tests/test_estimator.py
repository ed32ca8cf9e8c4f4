"""GPTClassifier: scikit-learn's estimator interface over gptcls, and the in-memory trunk cache
that lets cross-validation and grid searches run each text through the frozen trunk once."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="GPTClassifier needs scikit-learn (dev extra)")
from helpers import ESTIMATOR_TINY as TINY  # noqa: E402
from helpers import TOY_LABELS as LABELS  # noqa: E402
from helpers import TOY_TEXTS as TEXTS  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from gptcls import GPTClassifier  # noqa: E402
from gptcls.errors import GptclsError  # noqa: E402
from gptcls.estimator import (  # noqa: E402
    EXTRA,
    EstimatorError,
    clear_trunk_cache,
    option_parameters,
    trunk_cache_stats,
)
from gptcls.options import OPTIONS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def fitted() -> GPTClassifier:
    return GPTClassifier(**TINY).fit(TEXTS, LABELS)


def test_fit_predict_shapes_and_string_classes(fitted):
    assert list(fitted.classes_) == ["ham", "spam"]  # sorted, as LabelEncoder sorts
    pred = fitted.predict(TEXTS)
    assert pred.shape == (24,) and set(pred) <= {"ham", "spam"}
    probs = fitted.predict_proba(TEXTS)
    assert probs.shape == (24, 2) and np.allclose(probs.sum(1), 1, atol=1e-6)
    assert list(pred) == list(fitted.classes_[probs.argmax(1)])
    scores = fitted.decision_function(TEXTS)  # two classes: one score, > 0 means classes_[1]
    assert scores.shape == (24,)
    assert ((scores > 0) == (probs[:, 1] > 0.5)).all()
    assert 0.0 <= fitted.score(TEXTS, LABELS) <= 1.0
    assert fitted.classifier_.labels == ["ham", "spam"]
    assert fitted.history_["steps"]


def test_int_labels_three_classes_and_array_inputs():
    texts = TEXTS + [f"the weather is {w} today" for w in ("sunny", "cold", "grey", "wet")] * 3
    y = np.array([2] * 12 + [0] * 12 + [1] * 12)
    est = GPTClassifier(**TINY).fit(np.array(texts, dtype=object), y)
    assert est.classes_.tolist() == [0, 1, 2] and est.classes_.dtype.kind == "i"
    pred = est.predict(tuple(texts))
    assert pred.dtype.kind == "i" and set(pred.tolist()) <= {0, 1, 2}
    assert est.predict_proba(texts[:5]).shape == (5, 3)
    assert est.decision_function(texts[:5]).shape == (5, 3)
    column = np.array(texts, dtype=object)[:, None]  # (N, 1): one column of texts
    assert np.allclose(est.predict_proba(column), est.predict_proba(texts), atol=1e-6)


def test_pandas_series_and_frame_inputs(fitted):
    import pandas as pd  # a dev dependency: scikit-learn users hold texts in pandas
    expected = fitted.predict_proba(TEXTS)
    assert np.allclose(fitted.predict_proba(pd.Series(TEXTS)), expected, atol=1e-6)
    assert np.allclose(fitted.predict_proba(pd.DataFrame({"text": TEXTS})), expected, atol=1e-6)


def test_parameters_are_the_train_options_with_their_defaults():
    params = GPTClassifier().get_params()
    assert set(params) == set(option_parameters()) | set(EXTRA)
    assert {"model", "epochs", "lr", "trainable_blocks", "pooling", "max_length", "precision",
            "trainable", "lora_rank", "seed", "balance", "cache_trunk"} <= set(params)
    assert not {"data", "train", "test", "split", "text_column"} & set(params)  # files
    for name in option_parameters():
        if name != "model" and OPTIONS[name].recipe:
            assert params[name] is None, name  # None: the model family's recipe
    assert params["balance"] == "none" and params["seed"] == OPTIONS["seed"].default
    assert params["validation_fraction"] == 0.0 and params["out"] is None


def test_get_set_params_round_trip_and_clone(fitted):
    est = GPTClassifier(**TINY)
    assert est.set_params(epochs=3, pooling="mean") is est
    assert est.get_params()["epochs"] == 3 and est.get_params()["pooling"] == "mean"
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(TEXTS)
    with pytest.raises(TypeError, match="epoch"):
        GPTClassifier(epoch=3)  # a typo fails at once, as with any __init__


def test_options_are_checked_by_fit_not_init():
    est = GPTClassifier(**{**TINY, "pooling": "middle", "epochs": -1})  # no error yet
    with pytest.raises(EstimatorError, match="pooling") as info:
        est.fit(TEXTS, LABELS)
    assert isinstance(info.value, GptclsError) and isinstance(info.value, ValueError)
    with pytest.raises(EstimatorError, match="validation split"):
        GPTClassifier(**TINY, early_stopping="val_loss").fit(TEXTS, LABELS)


def test_bad_inputs_say_what_is_wrong():
    est = GPTClassifier(**TINY)
    with pytest.raises(EstimatorError, match="not one string"):
        est.fit("one text", ["spam", "ham"])
    with pytest.raises(EstimatorError, match="item 0 is a float"):
        est.fit(np.zeros((4, 1)), [0, 1, 0, 1])
    with pytest.raises(EstimatorError, match="24 texts but y has 3"):
        est.fit(TEXTS, LABELS[10:13])
    with pytest.raises(EstimatorError, match="one class \\('spam'\\)"):
        est.fit(TEXTS, ["spam"] * 24)
    with pytest.raises(EstimatorError, match="empty"):
        est.fit(TEXTS[:-1] + ["   "], LABELS)
    with pytest.raises(ValueError, match="Unknown label type"):
        est.fit(TEXTS, np.linspace(0, 1, 24))


def test_validation_fraction_early_stopping_and_threshold():
    est = GPTClassifier(**{**TINY, "epochs": 3}, validation_fraction=0.25,
                        early_stopping="val_loss", max_fpr=0.5).fit(TEXTS, LABELS)
    hist = est.history_
    assert len(hist["val_full_losses"]) >= 1 and hist["best_epoch"][0] >= 1
    threshold = est.classifier_.config.threshold
    assert threshold is not None  # chosen on the held-out quarter
    probs = est.predict_proba(TEXTS)
    assert list(est.predict(TEXTS)) == ["spam" if p >= threshold else "ham" for p in probs[:, 1]]


def test_pipeline():
    pipe = Pipeline([("lower", FunctionTransformer(lambda xs: [x.lower() for x in xs])),
                     ("clf", GPTClassifier(**TINY))])
    pipe.fit(TEXTS, LABELS)
    assert pipe.predict(TEXTS[:3]).shape == (3,)
    assert set(pipe.named_steps["clf"].classes_) == {"ham", "spam"}


def test_cross_val_score_runs_each_text_through_the_trunk_once():
    clear_trunk_cache()
    before = trunk_cache_stats()["computed"]
    scores = cross_val_score(GPTClassifier(**TINY), TEXTS, LABELS, cv=3)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    # 3 fits on 2/3 of the texts each and 3 predictions on the rest: one pass over 24 texts.
    assert trunk_cache_stats()["computed"] - before == len(set(TEXTS))


def test_grid_search_shares_the_trunk_across_settings():
    clear_trunk_cache()
    before = trunk_cache_stats()["computed"]
    grid = GridSearchCV(GPTClassifier(**TINY), {"lr": [1e-3, 1e-2]}, cv=2)
    grid.fit(TEXTS, LABELS)
    assert grid.best_params_["lr"] in (1e-3, 1e-2)
    assert grid.predict(TEXTS[:2]).shape == (2,)
    assert trunk_cache_stats()["computed"] - before == len(set(TEXTS))  # 2 settings x 2 folds


def test_trunk_cache_runs_only_new_texts():
    clear_trunk_cache()
    start = trunk_cache_stats()["computed"]
    est = GPTClassifier(**TINY).fit(TEXTS[:16], LABELS[:16])
    assert trunk_cache_stats()["computed"] - start == 16
    new = [f"brand new message {i}" for i in range(4)]
    est.fit(TEXTS[8:] + new, LABELS[8:] + ["ham"] * 4)  # 8 seen, 8 unseen, 4 new
    assert trunk_cache_stats()["computed"] - start == 16 + 8 + 4
    est.predict(TEXTS)  # every text seen: no trunk pass
    assert trunk_cache_stats()["computed"] - start == 28
    GPTClassifier(**{**TINY, "seed": 7}).fit(TEXTS, LABELS)  # other random weights: new trunk
    assert trunk_cache_stats()["computed"] - start == 28 + 24
    GPTClassifier(**TINY, cache_trunk=False).fit(TEXTS, LABELS)  # the whole model every step
    assert trunk_cache_stats()["computed"] - start == 52
    assert trunk_cache_stats()["texts"] == 52 and trunk_cache_stats()["mb"] > 0
    clear_trunk_cache()
    assert trunk_cache_stats()["texts"] == 0


def test_cached_predictions_match_the_saved_run_directory(tmp_path, monkeypatch):
    from gptcls.classifier.classifier import Classifier

    monkeypatch.chdir(tmp_path)
    est = GPTClassifier(**TINY).fit(TEXTS, LABELS)
    assert list(tmp_path.iterdir()) == []  # no `out`: nothing written
    est.set_params(out=str(tmp_path / "run")).fit(TEXTS, LABELS)
    clf = Classifier.load(tmp_path / "run", device="cpu", precision="fp32")
    assert clf.labels == ["ham", "spam"]
    assert np.allclose(clf.predict_proba(TEXTS), est.predict_proba(TEXTS), atol=1e-5)


def test_pickle_round_trip(fitted):
    expected = fitted.predict_proba(TEXTS)
    again = pickle.loads(pickle.dumps(fitted))
    assert again.get_params() == fitted.get_params()
    assert list(again.classes_) == list(fitted.classes_)
    clear_trunk_cache()  # the unpickled model computes its trunk again: the same activations
    assert np.allclose(again.predict_proba(TEXTS), expected, atol=1e-6)
    unfitted = pickle.loads(pickle.dumps(GPTClassifier(**TINY)))
    assert unfitted.get_params() == GPTClassifier(**TINY).get_params()


# Every check that feeds numeric arrays (scikit-learn has no text data for its checks):
# GPTClassifier raises EstimatorError("X must hold texts ...") there, by design. Some then fail
# inside the check itself: with the one_d_array tag the check indexes its 1-d X as 2-d.
NUMERIC = "numeric X: GPTClassifier takes texts, so it rejects the check's data by design"
EXPECTED_FAILED_CHECKS = {name: NUMERIC for name in (
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_classifier_data_not_an_array",
    "check_classifiers_classes", "check_classifiers_train", "check_supervised_y_2d",
    "check_decision_proba_consistency", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
    "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
    "check_n_features_in", "check_fit2d_predict1d")}
EXPECTED_FAILED_CHECKS.update({
    "check_estimators_empty_data_messages": "X of shape (n, 0) is rejected as not texts, not "
                                            "with numpy's 0-feature wording",
    "check_estimator_sparse_array": "the check cannot make its 1-d sparse X (one_d_array tag)",
})


def run_checks(estimator, expected: dict[str, str]) -> dict[str, set[str]]:
    """check_estimator's result as {status: check names}."""
    from sklearn.utils.estimator_checks import check_estimator

    results: dict[str, set[str]] = {}

    def record(estimator, check_name, exception, status, expected_to_fail,
               expected_to_fail_reason):
        results.setdefault(status, set()).add(check_name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(estimator, expected_failed_checks=expected, on_fail=None,
                        callback=record)
    return results


def test_sklearn_estimator_checks():
    results = run_checks(GPTClassifier(**TINY), EXPECTED_FAILED_CHECKS)
    print({status: sorted(names) for status, names in results.items()})
    assert "failed" not in results, sorted(results["failed"])  # every failure is expected
    assert results["xfail"] == set(EXPECTED_FAILED_CHECKS)  # and still fails
    assert {"check_estimator_cloneable", "check_no_attributes_set_in_init",
            "check_estimators_unfitted", "check_get_params_invariance", "check_set_params",
            "check_parameters_default_constructible", "check_classifiers_one_label",
            "check_classifiers_regression_target", "check_requires_y_none",
            "check_estimator_sparse_matrix", "check_fit1d"} <= results["passed"]


class NumbersAsTexts(GPTClassifier):
    """GPTClassifier with each row of numbers written as a text ("0.55 -1.20"), so that
    scikit-learn's checks that can only feed numbers exercise the text path behind them
    (idempotent fits, pickling, subset and order invariance, untouched parameters, ...)."""

    @staticmethod
    def as_number_texts(X):
        X = np.asarray(X)
        return [" ".join(f"{v:.2f}" for v in row) for row in X.reshape(len(X), -1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = False  # rows of numbers, not one text each
        tags.input_tags.string = False
        return tags

    def fit(self, X, y):
        return super().fit(self.as_number_texts(X), y)

    def _logits(self, X):
        return super()._logits(self.as_number_texts(X))


# What the adapter cannot show: checks of numeric input validation (the adapter turns any
# array into texts first), and one of learning quality.
ADAPTER = "numeric input validation: the adapter writes any array as texts before fit sees it"
ADAPTER_EXPECTED_FAILURES = {name: ADAPTER for name in (
    "check_n_features_in_after_fitting", "check_n_features_in",
    "check_estimators_empty_data_messages", "check_estimators_nan_inf",
    "check_estimator_sparse_tag", "check_estimator_sparse_array", "check_estimator_sparse_matrix",
    "check_fit1d", "check_fit2d_predict1d", "check_dtype_object")}
ADAPTER_EXPECTED_FAILURES["check_classifiers_train"] = (
    "accuracy: one epoch of a random-weights 2-block model on numbers written as text stays "
    "below the check's 0.83")


def test_sklearn_numeric_checks_on_numbers_written_as_texts():
    results = run_checks(NumbersAsTexts(**TINY), ADAPTER_EXPECTED_FAILURES)
    print({status: sorted(names) for status, names in results.items()})
    assert "failed" not in results, sorted(results["failed"])
    assert results["xfail"] == set(ADAPTER_EXPECTED_FAILURES)
    behaviour = set(EXPECTED_FAILED_CHECKS) - set(ADAPTER_EXPECTED_FAILURES)
    assert behaviour <= results["passed"], sorted(behaviour - results["passed"])


def test_readme_sklearn_example_runs(capsys):
    import re

    from helpers import TESTS

    text = (TESTS.parent / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## scikit-learn\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    clear_trunk_cache()
    before = trunk_cache_stats()["computed"]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["grid"].cv_results_["params"]) == 4
    # 3 folds + 4 settings x 3 folds + the refit: 16 fits on 8-12 texts and 15 predictions
    # on 4, 192 trunk runs without the cache. With it, each text runs once, and again only when
    # its fold cut it (a held-out text longer than all of its fold's training texts).
    computed = trunk_cache_stats()["computed"] - before
    assert len(set(namespace["texts"])) == 12 <= computed < 2 * 12
    assert trunk_cache_stats()["texts"] == 0  # the example clears the cache at its end
    assert "'lr'" in capsys.readouterr().out


def test_a_fixed_context_makes_every_fold_share_every_text():
    texts = [t + " now" * (i % 5) for i, t in enumerate(TEXTS)]  # lengths vary within a class
    clear_trunk_cache()
    before = trunk_cache_stats()["computed"]
    cross_val_score(GPTClassifier(**TINY, context="24"), texts, LABELS, cv=3)
    assert trunk_cache_stats()["computed"] - before == len(set(texts))


def test_max_cache_mb_bounds_the_trunk_cache():
    clear_trunk_cache()
    GPTClassifier(**TINY).fit(TEXTS, LABELS)
    stats = trunk_cache_stats()
    full, computed = stats["mb"], stats["computed"]
    assert stats["texts"] == 24
    # A fit whose own activations exceed the limit runs the whole model, as `gptcls train` does.
    GPTClassifier(**TINY, max_cache_mb=full / 1000).fit(TEXTS, LABELS)
    assert trunk_cache_stats()["computed"] == computed and trunk_cache_stats()["texts"] == 24
    # Within it, the least recently used texts go until the cache fits.
    est = GPTClassifier(**TINY, max_cache_mb=0.75 * full).fit(TEXTS[6:18], LABELS[6:18])
    stats = trunk_cache_stats()
    assert stats["computed"] == computed and stats["mb"] <= 0.75 * full and stats["texts"] < 24
    est.predict(TEXTS[6:18])  # the texts just used were kept
    assert trunk_cache_stats()["computed"] == computed


def test_policies_without_a_frozen_trunk_run_the_whole_model():
    clear_trunk_cache()
    for params in ({"trainable": "all"}, {"trainable": "lora", "lora_rank": 2}):
        est = GPTClassifier(**TINY, **params).fit(TEXTS, LABELS)
        assert est.predict_proba(TEXTS).shape == (24, 2)
    assert trunk_cache_stats()["texts"] == 0  # every block trains or has adapters
    lora = GPTClassifier(**TINY, trainable="lora", trainable_blocks=1).fit(TEXTS, LABELS)
    assert lora.classifier_.config.lora["merged"]  # as a run directory holds it
    assert trunk_cache_stats()["texts"] == 24  # block 0 is frozen below the adapters
