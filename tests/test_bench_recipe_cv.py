"""bench/recipe_cv.py's grid and folds: every setting of the product, and k stratified folds
that partition the pool. Nothing trains."""

from collections import Counter

import pytest
from helpers import bench_modules

from gptcls.data.examples import Example


@pytest.fixture(scope="module")
def recipe_cv():
    with bench_modules("recipe_cv") as (module,):
        yield module


def test_grid_is_the_product_of_the_values(recipe_cv):
    grid = recipe_cv.parse_grid("trainable_blocks=1,2; pooling=last,last+mean;lr=1e-4")
    assert len(grid) == 4
    assert grid[0] == {"trainable_blocks": "1", "pooling": "last", "lr": "1e-4"}
    assert {(g["trainable_blocks"], g["pooling"]) for g in grid} == {
        ("1", "last"), ("1", "last+mean"), ("2", "last"), ("2", "last+mean")}
    assert recipe_cv.parse_grid("") == [{}]  # the recipe alone


def test_folds_partition_the_pool_and_keep_the_class_mix(recipe_cv):
    pool = [Example(f"t{i}", "spam" if i % 4 == 0 else "ham") for i in range(103)]
    folds = recipe_cv.folds(pool, 5, seed=123)
    texts = [ex.text for fold in folds for ex in fold]
    assert sorted(texts) == sorted(ex.text for ex in pool)  # each example in one fold
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 2  # 1 per class
    for fold in folds:  # 26 spam of 103: 5 or 6 per fold
        assert Counter(ex.label for ex in fold)["spam"] in (5, 6)
    assert [ex.text for ex in recipe_cv.folds(pool, 5, seed=123)[0]] == [
        ex.text for ex in folds[0]]  # seeded


def test_copies_of_a_text_share_a_fold(recipe_cv):
    pool = [Example(f"t{i % 40}", "spam" if i % 40 < 10 else "ham") for i in range(100)]
    folds = recipe_cv.folds(pool, 5, seed=1)
    fold_of = {ex.text: j for j, fold in enumerate(folds) for ex in fold}
    assert len(fold_of) == 40  # 40 distinct texts, each in exactly one fold
    assert sum(len(f) for f in folds) == 100
    assert all(Counter(ex.text for ex in fold)[ex.text] in (2, 3) for fold in folds
               for ex in fold)  # all 2-3 copies of a text together
