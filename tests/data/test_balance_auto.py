"""--balance auto (the default): the SMS Spam Collection is undersampled as the chapter does;
any other data keeps every row, and the run says which was decided."""

from __future__ import annotations

import numpy as np
from helpers import SMS_PATH

from gptcls.data.partition import USER_DATA_BALANCE, resolved_balance
from gptcls.data.splits import describe_splits, load_splits
from gptcls.options import DataOptions, RunOptions

TREC_TRAIN = SMS_PATH.parents[1] / "trec" / "train_5500.label"


def test_resolved_balance():
    assert resolved_balance("auto", ["sms"], given_splits=False) == "undersample"
    assert resolved_balance("auto", ["csv"], given_splits=False) == USER_DATA_BALANCE
    assert resolved_balance("auto", ["sms"] * 3, given_splits=True) == USER_DATA_BALANCE
    assert resolved_balance("auto", [], given_splits=True) == USER_DATA_BALANCE
    for given in ("undersample", "none", "weighted"):  # given: always as given
        assert resolved_balance(given, ["csv"], given_splits=False) == given
        assert resolved_balance(given, ["sms"], given_splits=False) == given


def test_the_sms_file_is_still_the_chapters_split():
    logged: list[str] = []
    splits = load_splits(DataOptions(data=str(SMS_PATH)), None, logged.append)
    assert DataOptions().balance == "auto"
    assert splits.balance == "undersample" and splits.balanced == (1494, 5574)
    assert [len(splits[n]) for n in ("train", "validation", "test")] == [1045, 149, 300]
    assert any(m.startswith("balance auto: the SMS Spam Collection is undersampled")
               for m in logged)
    explicit = load_splits(DataOptions(data=str(SMS_PATH), balance="undersample"), None,
                           lambda _: None)
    assert [e.text for e in explicit.test] == [e.text for e in splits.test]


def test_other_data_keeps_every_row_and_says_so():
    """TREC as a user gives it: undersampling kept 516 of its 5,444 rows (86 per class)."""
    logged: list[str] = []
    splits = load_splits(DataOptions(data=str(TREC_TRAIN)), None, logged.append)
    assert splits.balance == "none" == USER_DATA_BALANCE and splits.balanced is None
    assert sum(len(splits[n]) for n in ("train", "validation", "test")) == 5444
    assert splits.class_weights is None
    assert any(m.startswith("balance auto: every row kept") for m in logged)
    assert "balance: none" in describe_splits(splits)
    undersampled = load_splits(DataOptions(data=str(TREC_TRAIN), balance="undersample"), None,
                               lambda _: None)
    assert sum(len(undersampled[n]) for n in ("train", "validation", "test")) == 516


def test_three_given_files_are_never_undersampled(tmp_path):
    for name in ("train", "validation", "test"):
        (tmp_path / f"{name}.csv").write_text(
            "text,label\n" + "".join(f"{name} text {i},{'a' if i % 4 else 'b'}\n"
                                     for i in range(40)))
    opts = DataOptions(**{n: str(tmp_path / f"{n}.csv") for n in ("train", "validation", "test")})
    splits = load_splits(opts, None, lambda _: None)
    assert splits.balance == "none" and len(splits.train) == 40


def test_texts_in_memory_are_never_undersampled_by_auto(tmp_path):
    from gptcls.training.in_memory import balanced

    opts = RunOptions(out=tmp_path)
    assert opts.data.balance == "auto"
    y = np.array([0] * 30 + [1] * 10)
    idx, weights = balanced(list(range(40)), y, 2, opts)
    assert idx == list(range(40)) and weights is None
