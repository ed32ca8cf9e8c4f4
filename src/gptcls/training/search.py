"""`gptcls train --search`: a few recipes tried on one pass of the frozen trunk; the best on
validation macro-F1 becomes the run.

The space: the last 1, 2 or 4 blocks trainable (and the recipe's count), pooling last, last+mean
or mean, three learning rates around the recipe's (x1, x0.5, x2) and the head's learning rate
equal to or 10x the blocks' (and the recipe's ratio). Every try trains up to --epochs epochs with
early stopping on validation macro-F1 (patience 2 unless --patience) and keeps its best epoch.

One trunk pass: the trunk is cached at the input of the lowest block any try trains, i.e. below
the largest block count. A try that trains fewer blocks runs the blocks between that point and
its own first trainable block in its top, frozen: nothing below them trains, so no gradient flows
through them (forward only), and their output is the one its own trunk would have cached. The
trade: one cache per distinct count would cost a pass per count (SmolLM2, 30 blocks, counts 1, 2,
4: 29 + 28 + 26 block forwards per text instead of 26) and that many times the memory, while
here a 1-block try does 3 more block forwards per text and epoch (its step costs about 4 + 2x1
block passes instead of 1 + 2x1); `try_cost` puts that in the budget's estimates.

Order: the recipe first, then the untried settings closest (fewest options changed) to the best
try so far: the recipe's neighbours one option at a time, then the neighbours of whichever beat
it (a greedy walk). The budget covers the whole search from the end of model loading (the
probe, the trunk pass, the tries): a cheap probe (the trunk and one epoch on PROBE_TEXTS
training texts) estimates the trunk pass and the first try, and a budget too small for those
is refused before anything is written; later tries are estimated from the measured ones and
the search stops before a try that would pass the budget. Test data is never looked at.

`gptcls grid` differs: it trains a user-given cartesian product, each combination a full run
directory with test metrics (the trunk runs per run unless --trunk-cache-dir), for a table of
design choices; --search is one run that chooses its own recipe on validation.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptcls.classifier.config import policy_name
from gptcls.classifier.model import ClassifierModel
from gptcls.distributed import Dist
from gptcls.errors import GptclsError
from gptcls.evaluation.metrics import macro_f1
from gptcls.log import line_logger, plural
from gptcls.options import RunOptions, TrainConfig
from gptcls.training.checkpoint import load_trainable, trainable_state
from gptcls.training.loop import evaluate, train
from gptcls.training.trunk_cache import Store, build_store, cache_size_mb, full_batches

SEARCH_FILE = "search.csv"
BLOCKS = (1, 2, 4)
POOLINGS = ("last", "last+mean", "mean")  # the same token ids (last-position pads them)
LR_FACTORS = (1.0, 0.5, 2.0)
HEAD_RATIOS = (1.0, 10.0)  # head lr / blocks' lr
PATIENCE = 2
PROBE_TEXTS = 16
COLUMNS = ("try", "trainable_blocks", "pooling", "lr", "head_lr", "best_epoch", "epochs_run",
           "val_macro_f1", "val_accuracy", "val_loss", "seconds", "chosen")

_log = line_logger(__name__)
clock: Callable[[], float] = time.perf_counter


@dataclass(frozen=True)
class Try:
    """One setting of the searched options (head_lr None: the blocks' lr)."""

    trainable_blocks: int
    pooling: str
    lr: float
    head_lr: float | None

    def flags(self) -> str:
        head = f" --head-lr {self.head_lr:g}" if self.head_lr is not None else ""
        return (f"--trainable-blocks {self.trainable_blocks} --pooling {self.pooling} "
                f"--lr {self.lr:g}{head}")


@dataclass
class TryResult:
    """A trained try, scored on all of validation at its best epoch."""

    setting: Try
    val_macro_f1: float
    val_accuracy: float
    val_loss: float
    best_epoch: int
    epochs_run: int
    seconds: float
    state: dict[str, torch.Tensor] = field(repr=False)  # its trainable weights
    history: dict[str, list] = field(repr=False)

    @property
    def key(self) -> tuple[float, float]:
        """Higher is better: macro-F1, then (ties) lower loss."""
        return (self.val_macro_f1, -self.val_loss)


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def search_space(opts: RunOptions, n_layers: int) -> list[Try]:
    """Every setting, the options' own (the recipe and what was given) first."""
    lr, head = opts.train.lr, opts.train.head_lr
    blocks = [n for n in _unique([opts.trainable_blocks, *BLOCKS]) if n <= n_layers]
    poolings = ([opts.pooling] if opts.pooling == "last-position"
                else _unique([opts.pooling, *POOLINGS]))
    lrs = _unique([float(f"{lr * f:.6g}") for f in LR_FACTORS])
    ratios = _unique([head / lr if head is not None else 1.0, *HEAD_RATIOS])
    return [Try(n, p, r, None if q == 1.0 else float(f"{r * q:.6g}"))
            for n, p, r, q in itertools.product(blocks, poolings, lrs, ratios)]


def _coordinates(t: Try) -> tuple[int, str, float, float]:
    """The searched dimensions: the head's lr as its ratio to the blocks' lr."""
    ratio = round(t.head_lr / t.lr, 6) if t.head_lr is not None else 1.0
    return (t.trainable_blocks, t.pooling, t.lr, ratio)


def distance(a: Try, b: Try) -> int:
    """How many searched options differ."""
    return sum(x != y for x, y in zip(_coordinates(a), _coordinates(b), strict=True))


def next_try(space: list[Try], done: set[int], best: int | None) -> int | None:
    """Index of the next setting: the first, then the untried one nearest the best."""
    left = [i for i in range(len(space)) if i not in done]
    if not left:
        return None
    if best is None:
        return left[0]
    return min(left, key=lambda i: (distance(space[i], space[best]), i))


def try_cost(blocks: int, max_blocks: int) -> float:
    """Relative cost of a try's step from the shared cache: a forward through every cached-
    above block, a backward (about two forwards) through the ones that train, and the head."""
    return max_blocks + 2 * blocks + 1


def estimate_s(setting: Try, done: list[TryResult], max_blocks: int) -> float:
    """Seconds a try should take: the slowest measured try with its block count, else the
    first try's time scaled by `try_cost`."""
    same = [r.seconds for r in done if r.setting.trainable_blocks == setting.trainable_blocks]
    if same:
        return max(same)
    first = done[0]
    return first.seconds * (try_cost(setting.trainable_blocks, max_blocks)
                            / try_cost(first.setting.trainable_blocks, max_blocks))


def search_loop(space: list[Try], train_try: Callable[[Try], TryResult], budget_s: float,
                started: float, max_blocks: int) -> tuple[list[TryResult], int, bool]:
    """Train tries in `next_try` order until the space is done or the next try's estimate
    would pass the budget (the first always runs: the probe admitted it). Returns the
    results in order, the best one's index and whether the budget stopped the search."""
    results: list[TryResult] = []
    done: set[int] = set()
    best: int | None = None  # index into space
    best_result = 0  # index into results
    while (i := next_try(space, done, best)) is not None:
        if results and clock() - started + estimate_s(space[i], results, max_blocks) > budget_s:
            return results, best_result, True
        result = train_try(space[i])
        done.add(i)
        results.append(result)
        if best is None or result.key > results[best_result].key:
            if best is not None:
                results[best_result].state = {}  # only the best try's weights are kept
            best, best_result = i, len(results) - 1
        else:
            result.state = {}
    return results, best_result, False


def check_search(opts: RunOptions, run: Any, dist: Dist) -> None:
    """What --search cannot combine with (one line each)."""
    if opts.trainable not in (None, "last-N-blocks"):
        raise GptclsError(f"--search chooses --trainable-blocks itself: drop --trainable "
                          f"{opts.trainable}")
    clashes = [flag for flag, on in (("--train-embeddings", opts.train_embeddings),
                                     ("--no-cache-trunk", not opts.train.cache_trunk),
                                     ("--checkpoint-every", opts.train.checkpoint_every))
               if on]
    if clashes:
        raise GptclsError(f"--search trains every try on one cached trunk pass: drop "
                          f"{', '.join(clashes)}")
    if dist.world > 1:
        raise GptclsError("--search runs in one process (not under torchrun)")
    if run.stores["train"].labels.dim() != 1:
        raise GptclsError("--search scores single-label tries (macro-F1); not with multi-label "
                          "data")


class Search:
    """A search on one run's prepared model and token ids (pipeline.run_training makes one
    after loading the model, before writing anything, and runs it in place of `train`)."""

    def __init__(self, opts: RunOptions, run: Any, device: torch.device,
                 dist: Dist | None = None):
        self.started = clock()
        check_search(opts, run, dist or Dist())
        self.opts, self.run_, self.device = opts, run, device
        self.backbone = run.model.backbone
        self.num_classes = run.model.head.out_features
        self.space = search_space(opts, self.backbone.config.n_layers)
        self.max_blocks = max(t.trainable_blocks for t in self.space)
        self.depth = self.backbone.config.n_layers - self.max_blocks  # the cache's split
        self.patience = opts.train.patience or PATIENCE
        # Restored before each try: every try starts from the pretrained weights.
        self.pristine = {k: v.detach().clone() for k, v in self.backbone.state_dict().items()
                         if self._trainable_key(k)}
        self._check_cacheable()
        self.estimate = self._probe()
        need = clock() - self.started + sum(self.estimate.values())
        if need > opts.train.search_budget:
            raise GptclsError(
                f"--search-budget {opts.train.search_budget:g} s is too small for one try: "
                f"the trunk pass and the first try take about {need:.0f} s here (estimated); "
                f"give at least {need * 1.2:.0f}")
        _log(f"search: {len(self.space)} settings; trunk pass about "
             f"{self.estimate['trunk_s']:.0f} s, the first try about "
             f"{self.estimate['try_s']:.0f} s (estimated), budget "
             f"{opts.train.search_budget:g} s")

    def _trainable_key(self, key: str) -> bool:
        if key.startswith("final_norm."):
            return True
        parts = key.split(".")
        return parts[0] == "blocks" and int(parts[1]) >= self.depth

    def restore(self) -> None:
        self.backbone.load_state_dict(self.pristine, strict=False)

    def model_for(self, setting: Try) -> ClassifierModel:
        """A fresh head on the shared backbone, its top starting at the cache's split."""
        # Seeded right before the head, as a plain run does: the same initial head.
        torch.manual_seed(self.opts.train.seed)
        model = ClassifierModel(self.backbone, self.num_classes, setting.pooling,
                                head_bias=self.opts.head_bias)
        n = setting.trainable_blocks
        model.set_policy(policy_name(n), n, final_norm=self.opts.train_final_norm)
        # Blocks depth..(first trainable - 1) are frozen: running them in the top gives the
        # activations the try's own trunk would have cached, from the shared cache.
        model.first_trainable = self.depth
        return model.to(self.device)

    def _check_cacheable(self) -> None:
        model = self.model_for(self.space[0])
        reason = model.trunk_uncacheable_reason()
        if reason is not None:
            raise GptclsError(f"--search needs a cacheable frozen trunk: {reason}")
        size = sum(cache_size_mb(v, self.backbone.config.emb_dim)
                   for v in self.run_.ids.values())
        if size > self.opts.train.max_cache_mb:
            raise GptclsError(f"--search needs the trunk cache: it would take {size:.0f} MB "
                              f"(> --max-cache-mb {self.opts.train.max_cache_mb:g})")

    def try_config(self, setting: Try, cfg: TrainConfig) -> TrainConfig:
        return dataclasses.replace(cfg, lr=setting.lr, head_lr=setting.head_lr,
                                   early_stopping="val_f1", patience=self.patience)

    def _probe(self) -> dict[str, float]:
        """Trunk pass and first-try seconds, from the trunk and one epoch on a sample."""
        ids = self.run_.ids
        step = max(1, len(ids["train"]) // PROBE_TEXTS)
        pick = list(range(0, len(ids["train"]), step))[:PROBE_TEXTS]
        sample = [ids["train"][i] for i in pick]
        labels = self.run_.stores["train"].item_labels(pick).tolist()
        model = self.model_for(self.space[0])
        t0 = clock()
        store = build_store(model, sample, labels, True, self.device,
                            precision=self.run_.precision)
        trunk_s = clock() - t0
        cfg = dataclasses.replace(self.try_config(self.space[0], self.opts.train), epochs=1)
        for _ in range(2):  # the second epoch is timed: the first pays one-time start-up costs
            t0 = clock()
            train(model, store, store, cfg, self.device, log=_quiet)
            epoch_s = clock() - t0
        self.restore()
        tokens = sum(map(len, sample))
        distinct = sum(sum(len(s) for s in {tuple(x) for x in v}) for v in ids.values())
        seen = sum(map(len, ids["train"])) + sum(map(len, ids["validation"]))
        # The sample epoch trained and validated on the sample: 2 x its tokens.
        return {"trunk_s": trunk_s * distinct / tokens,
                "try_s": epoch_s * self.opts.train.epochs * seen / (2 * tokens)}

    def stores(self, times: dict[str, float]) -> dict[str, Store]:
        """The one trunk pass: every split cached at the split below the deepest try."""
        model, run = self.model_for(self.space[0]), self.run_
        _log(f"frozen trunk ({plural(self.depth, 'block')}) computed once per text for every "
             f"try in {run.precision}")
        t0 = clock()
        stores = {name: build_store(model, run.ids[name], store.labels.tolist(), True,
                                    self.device, desc=name, precision=run.precision,
                                    cache_dir=self.opts.train.trunk_cache_dir)
                  for name, store in run.stores.items()}
        for name, store in stores.items():  # --long-text chunk: items are windows of texts
            store.groups = run.stores[name].groups
        times["trunk_cache_s"] = clock() - t0
        return stores

    def train_try(self, setting: Try, cfg: TrainConfig, stores: dict[str, Store],
                  index: int) -> TryResult:
        self.restore()
        model = self.model_for(setting)
        t0 = clock()
        hist = train(model, stores["train"], stores["validation"],
                     self.try_config(setting, cfg), self.device, log=_quiet)
        val = stores["validation"]
        va = evaluate(model, val, full_batches(val), self.device)
        f1 = macro_f1(val.labels.numpy(), va["probs"].argmax(-1).numpy(), self.num_classes)
        result = TryResult(setting, f1, float(va["accuracy"]), float(va["loss"]),
                           hist["best_epoch"][0], len(hist["train_accs"]), clock() - t0,
                           trainable_state(model), hist)
        _log(f"search try {index}: {setting.flags()}: val macro-F1 {f1:.4f}, loss "
             f"{result.val_loss:.4f} (epoch {result.best_epoch}) in {result.seconds:.1f} s")
        return result

    def run(self, cfg: TrainConfig, times: dict[str, float]) -> tuple[RunOptions, Any, dict]:
        """Trunk pass, tries, search.csv; the winner's options, prepared run and history
        (its model holds the winning try's weights) for the pipeline to finish."""
        stores = self.stores(times)
        counter = itertools.count(1)
        results, best, stopped = search_loop(
            self.space, lambda s: self.train_try(s, cfg, stores, next(counter)),
            self.opts.train.search_budget, self.started, self.max_blocks)
        win = results[best]
        self.restore()
        model = self.model_for(win.setting)
        load_trainable(model, win.state)
        n = win.setting.trainable_blocks
        opts = dataclasses.replace(
            self.opts, trainable_blocks=n, pooling=win.setting.pooling,
            train=self.try_config(win.setting, self.opts.train))
        run = dataclasses.replace(self.run_, model=model, stores=stores, cached=True,
                                  trainable_blocks=n, policy=opts.trainable or policy_name(n))
        times["search_s"] = clock() - self.started
        write_table(Path(self.opts.out) / SEARCH_FILE, results, best)
        self.summary = summary(results, best, stopped, len(self.space), times["search_s"],
                               self.opts.train.search_budget, self.depth, self.estimate)
        _log(self.summary["line"])
        return opts, run, win.history


def _quiet(msg: str) -> None:
    pass


def write_table(path: Path, results: list[TryResult], best: int) -> None:
    """search.csv: one row per try in the order tried."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for i, r in enumerate(results):
            s = r.setting
            w.writerow([i + 1, s.trainable_blocks, s.pooling, f"{s.lr:g}",
                        "" if s.head_lr is None else f"{s.head_lr:g}", r.best_epoch,
                        r.epochs_run, f"{r.val_macro_f1:.6f}", f"{r.val_accuracy:.6f}",
                        f"{r.val_loss:.6f}", f"{r.seconds:.2f}", int(i == best)])


def summary(results: list[TryResult], best: int, stopped: bool, space: int, seconds: float,
            budget: float, depth: int, estimate: dict[str, float]) -> dict[str, Any]:
    """metrics.json's `search` section, with the report's line."""
    win = results[best]
    line = (f"search: {len(results)} tries in {seconds:.0f} s; chose {win.setting.flags()} "
            f"(best epoch {win.best_epoch}; val macro-F1 {win.val_macro_f1:.3f})"
            + (f"; stopped by --search-budget {budget:g} s ({space} settings)"
               if stopped else ""))
    return {"tries": len(results), "settings": space, "seconds": seconds, "budget_s": budget,
            "stopped_by_budget": stopped, "trunk_passes": 1, "trunk_depth": depth,
            "estimate": estimate, "table": SEARCH_FILE,
            "chosen": {**dataclasses.asdict(win.setting), "best_epoch": win.best_epoch},
            "val_macro_f1": win.val_macro_f1, "val_loss": win.val_loss, "line": line}
