"""Duplicates: exact, near (loose key and MinHash), conflicting labels, shared across splits."""

from __future__ import annotations

import random

from gptcls.evaluation.duplicates import (
    exact_key,
    find_duplicates,
    jaccard,
    loose_key,
    shared_across,
    shingles,
    similar_pairs,
)


def test_keys():
    assert exact_key("  Call   me\tnow \n") == "Call me now"
    assert exact_key("ﬁne") == "fine"  # NFKC folds the ligature
    assert loose_key("Call 0800-123 NOW!!") == loose_key("call now") == "callnow"


def test_exact_near_and_conflicts_on_hand_made_rows():
    texts = [
        "Win a FREE prize now, call 0800 123",      # 0
        "Win a FREE prize now,  call 0800 123",     # 1 exact dup of 0 (whitespace)
        "win a free prize now call 0900 999",       # 2 near dup of 0 (case, digits, punctuation)
        "See you at the station at six",            # 3
        "See you at the station at six",            # 4 exact dup of 3, other label
        "Completely unrelated words about gardening",  # 5
    ]
    labels = ["spam", "spam", "spam", "ham", "spam", "ham"]
    d = find_duplicates(texts, labels)
    assert d.exact == [[0, 1], [3, 4]]
    assert d.conflicts == [[3, 4]]
    assert d.near == [[0, 1, 2]]


def test_minhash_finds_a_one_character_edit_among_many_texts():
    rng = random.Random(3)
    words = [f"w{rng.randrange(10**6)}" for _ in range(3000)]
    texts = [" ".join(rng.sample(words, 12)) for _ in range(500)]
    base = texts[17]
    texts.append(base[:-1] + ("x" if base[-1] != "x" else "y"))  # row 500: one edit of row 17
    pairs = similar_pairs(texts)
    assert [(i, j) for i, j, _ in pairs] == [(17, 500)]
    assert pairs[0][2] >= 0.9
    assert jaccard(shingles(texts[17]), shingles(texts[500])) == pairs[0][2]


def test_different_texts_are_not_near_duplicates():
    texts = ["the cat sat on the mat", "a dog ran in the park", "buy cheap meds online now"]
    d = find_duplicates(texts, ["a", "b", "c"])
    assert d.exact == d.near == d.conflicts == []


def test_shared_across_splits():
    splits = {"train": ["Hello there", "Buy now!", "unique train"],
              "test": ["hello there!!", "only in test"],
              "validation": ["buy now", "Hello  there"]}
    shared = shared_across(splits)
    assert {"train": [0], "test": [0], "validation": [1]} in shared
    assert {"train": [1], "validation": [0]} in shared
    assert len(shared) == 2
