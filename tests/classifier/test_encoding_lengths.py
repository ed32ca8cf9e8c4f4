"""The default max_length policy, its one-line message, and padding of length batches."""

import random

import pytest

from gptcls.classifier.encoding import (
    LENGTH_CAP,
    choose_max_length,
    length_batches,
    make_batches,
    padding_fraction,
)


def long_tail(n=2000, seed=0) -> list[int]:
    """Review-like token lengths: mostly 150-400, 1.5% of 600-5,000."""
    rng = random.Random(seed)
    return [rng.randint(600, 5000) if rng.random() < 0.015 else rng.randint(150, 400)
            for _ in range(n)]


def test_chapter_split_keeps_the_longest_training_text(sms_path):
    """The SMS chapter's split with GPT-2's tokenizer: 120 tokens, nothing cut, as before."""
    from gptcls.data import partition
    from gptcls.data.sms import read_sms_file
    from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer

    examples = partition.balance_undersample(read_sms_file(sms_path), seed=123)
    train = partition.random_split(examples, seed=123)[0]
    lengths = [len(s) for s in gpt2_tokenizer().encode_batch([e.text for e in train])]
    choice = choose_max_length(lengths, context_length=1024)
    assert (choice.max_length, choice.rule, choice.longer) == (120, "longest", 0)
    assert choice.message() == f"max_length 120 (the longest of the {len(train):,} training " \
                               "texts; no text cut)"


def test_long_texts_get_the_length_covering_98_percent_rounded_to_16():
    lengths = long_tail()
    choice = choose_max_length(lengths, context_length=8192)
    covering = sorted(lengths)[int(0.98 * len(lengths)) - 1]
    assert choice.rule == "coverage" and choice.max_length % 16 == 0
    assert covering <= choice.max_length < covering + 16 and choice.max_length <= LENGTH_CAP
    assert choice.longer == sum(n > choice.max_length for n in lengths)
    assert 0.98 <= 1 - choice.longer / len(lengths) < 1


def test_the_cap_and_the_context_bound_the_default():
    lengths = [700] * 90 + [3000] * 10  # 98% of them need 3,000 tokens
    assert choose_max_length(lengths, 8192).max_length == LENGTH_CAP
    assert choose_max_length(lengths, 256).max_length == 256
    assert choose_max_length(lengths, 8192, cap=1024).max_length == 1024
    # all under the cap: the longest, but never beyond the model's context
    assert choose_max_length([40, 300], 128).max_length == 128


def test_max_length_and_context_options_keep_their_meaning():
    lengths = long_tail()
    given = choose_max_length(lengths, 8192, max_length=1000)
    assert (given.max_length, given.rule) == (1000, "max-length")
    assert choose_max_length([10, 20], 8192, max_length=1000).max_length == 20
    assert choose_max_length(lengths, 8192, context="model").max_length == 8192
    assert choose_max_length(lengths, 8192, max_length=64, context="model").max_length == 64
    assert choose_max_length([10, 20], 8192, context="24").max_length == 24


def test_the_message_says_what_was_cut_and_how_to_change_it():
    choice = choose_max_length(long_tail(), 8192)
    line = choice.message("head", longer_elsewhere=7)
    covered = 1 - choice.longer / choice.texts
    assert line.startswith(f"max_length {choice.max_length} (covers {covered:.1%} of the 2,000 "
                           f"training texts; {choice.longer} longer training texts and 7 "
                           f"validation/test texts cut to their first {choice.max_length} tokens")
    assert "--max-length N" in line and "--long-text chunk" in line and "\n" not in line
    assert "their last" in choice.message("tail")


def test_padding_fraction_counts_padded_positions():
    assert padding_fraction([3, 1, 2], [[0, 1], [2]]) == pytest.approx(2 / 8)
    assert padding_fraction([5, 5], [[0, 1]]) == 0.0


def test_length_batches_waste_little_on_padding_of_mixed_lengths():
    lengths = [min(n, 512) for n in long_tail()]
    batches = length_batches(lengths, batch_tokens=4096, max_batch=512)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 4096 for b in batches if len(b) > 1)
    unsorted = [list(range(i, min(i + 16, len(lengths)))) for i in range(0, len(lengths), 16)]
    assert padding_fraction(lengths, batches) < 0.02 < 0.3 < padding_fraction(lengths, unsorted)
    bucketed = make_batches(lengths, 8, bucket=True)
    assert padding_fraction(lengths, bucketed) < 0.05


def test_length_batches_close_a_ragged_batch_once_it_holds_an_eighth_of_the_budget():
    rng = random.Random(1)
    # SMS-like: mostly short, a tail to 120 tokens
    lengths = [min(120, int(rng.expovariate(1 / 25)) + 2) for _ in range(1500)]
    batches = length_batches(lengths, batch_tokens=4096, max_batch=512)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches[:-1]:
        ls = sorted(lengths[i] for i in b)
        # its last text joined a batch still under 512 padded tokens, or padding stays <= 5%
        assert (len(ls) - 1) * ls[-2] < 512 or sum(ls) >= 0.95 * len(ls) * ls[-1]
    assert padding_fraction(lengths, batches) < 0.05
    assert padding_fraction(lengths, length_batches(lengths, 4096, 512, max_padding=1.0)) > 0.1
