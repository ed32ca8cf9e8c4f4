"""A label seen once or twice among many rows: reported with its rows as a probable typo and
dropped from training (--keep-rare-labels keeps it, --strict stops), never collapsing it."""

import pytest
from helpers import SMS_PATH

from gptcls.data.rare import rare_labels, rare_message
from gptcls.data.splits import describe_splits, load_splits
from gptcls.errors import GptclsError
from gptcls.options import DataOptions

TREC_TRAIN = SMS_PATH.parents[1] / "trec" / "train_5500.label"


@pytest.fixture
def sms_typo(tmp_path):
    """The real SMS file with the label of its first spam line after line 800 misspelt."""
    lines = SMS_PATH.open("rb").readlines()
    n = next(i for i in range(800, len(lines)) if lines[i].startswith(b"spam\t"))
    lines[n] = b'spa"m' + lines[n][4:]
    path = tmp_path / "SMSSpamCollection"
    path.write_bytes(b"".join(lines))
    return path, n + 1


def test_a_typo_label_is_reported_and_dropped_and_training_keeps_its_data(sms_typo):
    path, line = sms_typo
    logged: list[str] = []
    splits = load_splits(DataOptions(data=str(path)), None, logged.append)
    assert splits.labels == ["ham", "spam"]
    assert splits.dropped_rare == {'spa"m': 1}
    assert (f'warning: label "spa\\"m" appears in 1 row of 5,574 ({path}:{line}); probable '
            "typo of \"spam\"? dropped from training; use --strict to stop, or fix the file"
            ) in logged
    # Undersampled to the 746 spam left, not to the one typo row.
    assert splits.balanced == (2 * 746, 5573)
    assert all(len(splits[n]) > 100 for n in ("train", "validation", "test"))
    assert "rare labels dropped (probable typos): 'spa\"m' (1 row)" in describe_splits(splits)


def test_strict_stops_on_a_rare_label_in_one_line(sms_typo):
    path, line = sms_typo
    with pytest.raises(GptclsError) as err:
        load_splits(DataOptions(data=str(path), strict=True), None, lambda _: None)
    assert str(err.value).startswith('label "spa\\"m" appears in 1 row of 5,574')
    assert "(--strict: fix the file, or pass --keep-rare-labels)" in str(err.value)
    assert "\n" not in str(err.value)


def test_keep_rare_labels_gives_todays_collapse(tmp_path):
    """The issue's case: one odd row in 400 undersamples every class to one row."""
    path = tmp_path / "small.csv"
    rows = [f"message number {i},{'spam' if i % 4 == 0 else 'ham'}" for i in range(399)]
    path.write_text("text,label\n" + "\n".join(rows + ["odd one,sapm"]) + "\n")
    splits = load_splits(DataOptions(data=str(path)), None, lambda _: None)
    assert splits.labels == ["ham", "spam"] and splits.dropped_rare == {"sapm": 1}
    with pytest.raises(GptclsError, match="the train split is empty"):
        load_splits(DataOptions(data=str(path), keep_rare_labels=True, balance="undersample"),
                    None, lambda _: None)


def test_small_classes_of_small_files_are_not_rare():
    assert rare_labels({"a": 2, "b": 60}) == []  # 2 of 62: over 1%
    assert rare_labels({"a": 2, "b": 300}) == ["a"]
    assert rare_labels({"a": 3, "b": 3000}) == []  # three rows: a class, however small
    msg = rare_message("zzz", {"zzz": 1, "ham": 500}, [], "kept")
    assert msg == 'label "zzz" appears in 1 row of 501 kept'  # no close label: no guess


def test_trec_fine_trains_on_50_classes():
    logged: list[str] = []
    opts = DataOptions(data=str(TREC_TRAIN), label_level="fine", balance="none")
    splits = load_splits(opts, None, logged.append)
    assert len(splits.labels) == 50 and "num:how" not in splits.labels
    assert any('label "num:how" appears in 1 row of 5,444' in m for m in logged)
    coarse = load_splits(DataOptions(data=str(TREC_TRAIN), balance="none"), None,
                         lambda _: None)
    assert coarse.labels == ["abbr", "desc", "enty", "hum", "loc", "num"]


def test_separate_files_judge_rarity_together(tmp_path):
    """A class with 2 rows in the validation file but many in train is not a typo."""
    paths = []
    for name, n in (("train", 300), ("validation", 40), ("test", 40)):
        path = tmp_path / f"{name}.csv"
        few = (lambda i: i < 2) if name == "validation" else (lambda i: i % 3 == 0)
        rows = [f"text {name} {i},{'b' if few(i) else 'a'}" for i in range(n)]
        path.write_text("text,label\n" + "\n".join(rows) + "\n")
        paths.append(str(path))
    opts = DataOptions(train=paths[0], validation=paths[1], test=paths[2])
    splits = load_splits(opts, None, lambda _: None)
    assert splits.dropped_rare == {} and splits.labels == ["a", "b"]
    assert sum(e.label == "b" for e in splits.validation) == 2
