"""`GPTClassifier`: gptcls as a scikit-learn classifier over texts.

    from gptcls import GPTClassifier
    clf = GPTClassifier(model="gpt2-tiny", weights="random", epochs=2).fit(texts, labels)
    clf.predict(["free entry!"]); clf.predict_proba(texts); clf.score(texts, labels)

Its parameters are `gptcls train`'s options with underscores (declared once in options.py), less
the ones about reading and splitting files, plus `validation_fraction`, `out` and `verbose`.
Recipe options default to None: the model family's recipe, as on the command line.

fit ends as a `gptcls train` run on data a user brings (training/decisions.py): the temperature
is fitted on the held-out `validation_fraction` (none held out, the default: it stays 1), and
two-class tasks decide at `prior` (None: the given texts' class prior), so with balance
"undersample" or "weighted" the threshold is the Bayes one for that prior; `threshold` and
`max_fpr` override it. Both are classifier_.config's temperature and threshold.

The in-memory trunk cache: the frozen layers' output for each text is kept for the life of the
process, under the backbone's weights fingerprint, the trunk depth and precision and the text's
token ids (which carry max_length and truncation), so cross-validation and grid searches run
each text through a trunk about once; the backbone last loaded is kept too (see
training/in_memory.py). Memory: real tokens x model width x 4 bytes per distinct text (SmolLM2:
~2.3 KB per token, ~64 KB per SMS), least recently used dropped past `max_cache_mb` (4096 MB by
default), plus one fp32 copy of the backbone (~540 MB for SmolLM2-135M). `clear_trunk_cache()`
frees both. Parallel jobs (`n_jobs`) in other processes keep caches of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptcls.errors import GptclsError

try:  # the base classes are needed at class definition: this module is scikit-learn's side
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils.validation import check_is_fitted
except ImportError:
    raise GptclsError("GPTClassifier needs scikit-learn: pip install 'gptcls[sklearn]'") from None

from gptcls.classifier.classifier import Classifier
from gptcls.options import DEFAULT_MODEL, OPTIONS, RunOptions
from gptcls.progress import is_quiet, set_quiet
from gptcls.recipes import options_with_recipe
from gptcls.training.in_memory import Trained, forget_weights, quiet, restore, train_texts
from gptcls.training.trunk_memo import MEMO

# Of the data options, those that mean something for texts given in memory.
DATA_PARAMETERS = ("balance", "split_seed", "cache")
# Options of a run directory's training with no meaning here.
NOT_PARAMETERS = {
    "checkpoint_every": "resume state lives in a run directory; a fit is one call",
}
# scikit-learn fits on every row it is given: no undersampling unless asked.
DEFAULTS = {"balance": "none"}
EXTRA = {  # parameters that are not `gptcls train` options
    "validation_fraction": (0.0, "share of each class held out for the loop's validation, "
                                 "early_stopping, max_fpr and the calibration temperature "
                                 "(0: none; the temperature stays 1)"),
    "out": (None, "also write the fitted classifier as a run directory here"),
    "verbose": (False, "print the training log to stderr"),
}


def option_parameters() -> list[str]:
    """The `gptcls train` options that are GPTClassifier parameters, model first."""
    return ["model"] + [n for n, o in OPTIONS.items() if n != "model" and n not in NOT_PARAMETERS
                        and (o.section != "data" or n in DATA_PARAMETERS)]


def _signature() -> inspect.Signature:
    """GPTClassifier.__init__'s keyword parameters with their defaults: what get_params,
    set_params and clone read."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for name in option_parameters():
        o = OPTIONS[name]
        default = DEFAULT_MODEL if name == "model" else (
            None if o.recipe else DEFAULTS.get(name, o.default))
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d)
               for n, (d, _) in EXTRA.items()]
    return inspect.Signature(params)


class EstimatorError(GptclsError, ValueError):
    """Bad input or parameters: a GptclsError that is also the ValueError scikit-learn code
    (GridSearchCV's error_score, the estimator checks) expects."""


class GPTClassifier(ClassifierMixin, BaseEstimator):
    """A gptcls classifier with scikit-learn's interface: X is a sequence of texts (list, numpy
    array of str, pandas Series or one-column frame), y one label per text, of any type that
    sorts (classes_ is sorted, like LabelEncoder's).

    Options are validated by fit, not here (scikit-learn's rule): a bad one raises
    EstimatorError (a GptclsError and a ValueError). Nothing is written unless `out` is set.
    A fitted estimator pickles with its weights (a full run directory's files, as bytes), so
    it unpickles without the backbone's files. Parameters (None: the model's recipe):
    """

    def __init__(self, **params: Any) -> None:
        _SIGNATURE.bind(self, **params)  # a TypeError for unknown names, as a plain __init__
        for name, p in list(_SIGNATURE.parameters.items())[1:]:
            setattr(self, name, params.get(name, p.default))

    def fit(self, X: Any, y: Any) -> GPTClassifier:
        """Train on texts X with labels y; returns self. y as label lists ([["a", "b"], [],
        ...]) or a 0/1 indicator matrix (N, K) trains a multi-label classifier: classes_ is
        then the sorted labels (MultiLabelBinarizer's order) or 0..K-1, and predict returns
        an (N, K) indicator matrix."""
        if (sets := label_sets(y)) is not None:
            return self._fit(X, *sets)
        labels = as_labels(y)  # y first: its errors (one class, continuous) say the most
        classes, idx = label_indices(labels)
        if len(classes) < 2:
            raise EstimatorError(f"y has one class ({classes.tolist()[0]!r}); a classifier "
                                 "needs at least 2 classes")
        return self._fit(X, classes, idx.tolist())

    def _fit(self, X: Any, classes: np.ndarray, y: list) -> GPTClassifier:
        """y: class indices, or 0/1 rows (multi-label)."""
        texts = as_texts(X)
        if len(texts) != len(y):
            raise EstimatorError(f"X has {len(texts)} texts but y has {len(y)} labels")
        multi = bool(y) and isinstance(y[0], list)
        with user_errors():
            opts = self.run_options()
            if multi:
                opts = dataclasses.replace(opts, data=dataclasses.replace(opts.data,
                                                                          multi_label=True))
            log = _stderr if self.verbose else quiet
            with progress_shown(self.verbose):
                trained = train_texts(opts, texts, y, [str(c) for c in classes],
                                      self.validation_fraction, log)
            if self.out is not None:
                save_run_dir(trained, opts, self.out)
        self.classes_ = classes
        self._trained = trained
        return self

    def run_options(self) -> RunOptions:
        """The RunOptions these parameters give (recipe applied); GptclsError when invalid."""
        given = {name: getattr(self, name) for name in option_parameters()}
        return options_with_recipe(self.out or "(in memory)", **given)

    @property
    def classifier_(self) -> Classifier:
        """The fitted gptcls Classifier (save it, or predict with long_text="chunk")."""
        check_is_fitted(self)
        return self._trained.classifier

    @property
    def history_(self) -> dict[str, list]:
        """The training loop's history: losses, accuracies, epoch times."""
        check_is_fitted(self)
        return self._trained.history

    def _logits(self, X: Any) -> torch.Tensor:
        check_is_fitted(self)
        texts = as_texts(X)
        with user_errors():
            return self._trained.logits(texts)  # (N, K)

    # The decisions are the Classifier's (calibration temperature, the run's threshold,
    # per-label thresholds), so the estimator and a saved run directory never disagree.
    def decision_function(self, X: Any) -> np.ndarray:
        """Scores whose sign or argmax is predict's answer (Classifier.decision_scores): (N,)
        for two classes, > 0 where classes_[1] is predicted (calibrated log-odds less the
        threshold's); else (N, n_classes) calibrated logits (multi-label: > 0 where a label is
        predicted)."""
        return self.classifier_.decision_scores(self._logits(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, n_classes) calibrated class probabilities, columns in classes_ order (multi-label:
        each label's own sigmoid probability)."""
        return self.classifier_.probabilities(self._logits(X)).numpy()

    def _multi_label(self) -> bool:
        return self.classifier_.config.multi_label

    def predict(self, X: Any) -> np.ndarray:
        """A label per text, as Classifier.predict decides (the fitted threshold decides
        two-class tasks when one is set); multi-label: (N, K) 0/1, each label at its own
        threshold."""
        decisions = self.classifier_.decide(self.predict_proba(X))
        return decisions if self._multi_label() else self.classes_[decisions]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy; multi-label: subset accuracy (every label of a text right), y as label
        lists or an indicator matrix."""
        if self._multi_label() and (sets := label_sets(y, self.classes_)) is not None:
            y = np.asarray(sets[1])
        return super().score(X, y, sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True  # texts
        tags.input_tags.one_d_array = True  # one text per sample
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: it may be self.__dict__ itself
        trained = state.pop("_trained", None)
        if trained is not None:  # the weights as a full run directory's files, no torch pickle
            state["_packed"] = {"files": run_dir_files(trained.classifier),
                                "history": trained.history, "cached": trained.trunk_key is not None,
                                "precision": trained.precision,
                                "max_cache_mb": trained.max_cache_mb,
                                "trunk_cache_dir": trained.trunk_cache_dir}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        packed = state.pop("_packed", None)
        super().__setstate__(state)
        if packed is not None:
            with tempfile.TemporaryDirectory(prefix="gptcls-unpickle-") as tmp:
                for name, data in packed["files"].items():
                    path = Path(tmp) / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                clf = Classifier.load(tmp, device=self.device, precision=packed["precision"])
            self._trained = restore(clf, packed["history"], packed["cached"],
                                    packed["precision"], packed["max_cache_mb"],
                                    packed["trunk_cache_dir"])


_SIGNATURE = _signature()
GPTClassifier.__init__.__signature__ = _SIGNATURE  # type: ignore[attr-defined]


def _parameter_help(name: str) -> str:
    if name in EXTRA:
        return EXTRA[name][1]
    o = OPTIONS[name]
    # A --no-x flag's help says what False does.
    return f"False: {o.help}" if o.negative else o.help


GPTClassifier.__doc__ = (GPTClassifier.__doc__ or "") + "\n" + "\n".join(
    f"    {name}={p.default!r}: {_parameter_help(name)}"
    for name, p in list(_SIGNATURE.parameters.items())[1:]) + "\n"


def clear_trunk_cache() -> None:
    """Free the in-memory trunk cache (every text's activations) and the kept backbone."""
    MEMO.clear()
    forget_weights()


def trunk_cache_stats() -> dict[str, float]:
    """The in-memory trunk cache: texts kept, their MB, distinct texts computed and reused."""
    return MEMO.stats()


def as_texts(X: Any) -> list[str]:
    """X as a list of str: a list or tuple, a 1-d (or one-column) array, a Series or a
    one-column DataFrame of texts."""
    if isinstance(X, (str, bytes)):
        raise EstimatorError("X must be a sequence of texts (list, array, Series), not one "
                             "string")
    if hasattr(X, "tocsr") or hasattr(X, "todense"):  # scipy.sparse: numbers, never texts
        raise EstimatorError("sparse input is not supported: X must be a sequence of texts")
    if hasattr(X, "columns"):  # a DataFrame: its one column
        if X.shape[1] != 1:
            raise EstimatorError(f"X must be one column of texts; got {X.shape[1]} columns")
        X = X.iloc[:, 0]
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise EstimatorError(f"X must be a 1-d sequence of texts; got shape {arr.shape}")
    if len(arr) == 0:
        raise EstimatorError("X holds no texts (0 samples)")
    for i, t in enumerate(arr):
        if not isinstance(t, str):
            raise EstimatorError(f"X must hold texts (str); item {i} is a "
                                 f"{type(t).__name__}: {str(t)[:40]!r}")
        if not t.strip():  # as Classifier.predict and the training data stage reject them
            raise EstimatorError(f"X item {i} is an empty text")
    return [str(t) for t in arr]


def as_labels(y: Any) -> np.ndarray:
    """y as a 1-d array of class labels; scikit-learn's errors for regression targets and
    NaN."""
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise EstimatorError("GPTClassifier requires y to be passed, but the target y is None")
    y = column_or_1d(y, warn=True)
    if len(y) == 0:
        raise EstimatorError("y holds no labels (0 samples)")
    check_classification_targets(y)
    return y


def label_sets(y: Any, classes: Sequence[Any] | None = None
               ) -> tuple[np.ndarray, list[list[int]]] | None:
    """(classes_, 0/1 rows) when y is multi-label: a sequence of label lists/tuples/sets
    (classes sorted, as MultiLabelBinarizer) or a 2-d 0/1 indicator array or frame (with a
    `shape`; classes 0..K-1); None for one label per text."""
    if y is not None and not hasattr(y, "__len__"):
        y = np.asarray(y)  # array-likes with only __array__ (scikit-learn's _NotAnArray)
    if y is None or isinstance(y, str) or not len(y):
        return None
    shape = getattr(y, "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] > 1:
        rows = np.asarray(y)
        if not np.isin(rows, (0, 1)).all():
            raise EstimatorError("a 2-d y is a multi-label indicator matrix: 0/1 values only")
        return np.arange(rows.shape[1]), rows.astype(int).tolist()
    first = y.iloc[0] if hasattr(y, "iloc") else next(iter(y))
    if shape is not None and len(shape) > 1 or not isinstance(first, list | tuple | set
                                                               | frozenset):
        return None
    if classes is None:
        classes = np.array(sorted({lab for row in y for lab in row}), dtype=object)
    index = {lab: k for k, lab in enumerate(classes)}
    rows = [[0] * len(classes) for _ in y]
    for row, labs in zip(rows, y, strict=True):
        for lab in labs:
            if lab not in index:
                raise EstimatorError(f"label {lab!r} is not one of classes_")
            row[index[lab]] = 1
    return classes, rows


def label_indices(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct labels, each label's index into them), as LabelEncoder gives them."""
    try:
        classes, idx = np.unique(y, return_inverse=True)
    except TypeError:
        raise EstimatorError("y mixes label types that do not sort together (e.g. str and "
                             "int); use one type") from None
    return classes, idx.reshape(-1)


def save_run_dir(trained: Trained, opts: RunOptions, out: str | Path) -> None:
    """The fitted classifier as a run directory (`gptcls classify` and Classifier.load read it);
    delta or full as `save` says."""
    from gptcls.classifier.base_ref import base_identity

    clf = trained.classifier
    clf.config.backbone.update(base_identity(opts))
    clf.save(out)


def run_dir_files(clf: Classifier) -> dict[str, bytes]:
    """A full run directory's files (every weight: no base needed to load), by relative path."""
    config = dataclasses.replace(clf.config, save="full", backbone=dict(clf.config.backbone))
    with tempfile.TemporaryDirectory(prefix="gptcls-pickle-") as tmp:
        Classifier(config, clf.model, clf.tokenizer, str(clf.device), clf.precision).save(tmp)
        return {str(p.relative_to(tmp)): p.read_bytes()
                for p in sorted(Path(tmp).rglob("*")) if p.is_file()}


@contextlib.contextmanager
def progress_shown(shown: bool) -> Iterator[None]:
    """Progress lines only when verbose: a fit inside a grid search is one of many."""
    before = is_quiet()
    set_quiet(before or not shown)
    try:
        yield
    finally:
        set_quiet(before)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """GptclsError out of gptcls as EstimatorError, so scikit-learn code sees a ValueError."""
    try:
        yield
    except EstimatorError:
        raise
    except GptclsError as exc:
        raise EstimatorError(str(exc)) from exc


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


__all__: Sequence[str] = ["EstimatorError", "GPTClassifier", "clear_trunk_cache",
                          "trunk_cache_stats"]
