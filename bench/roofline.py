"""FLOP counting and GEMM rates at a model's Linear shapes: one definition for
bench/long_texts.py (the frozen-trunk pass) and bench/infer_speed.py (inference).

FLOP of a forward pass over texts of T_i tokens through L blocks:
  2 x (the weights of the blocks' nn.Linear layers) per token (embeddings are a lookup; norms,
  activations and the classification head are left out: small), plus attention: per layer
  4 x n_heads x head_dim x (t + 1) for the token at position t (QK^T and AV, causal), i.e.
  4 x n_heads x head_dim x T (T + 1) / 2 per text. Padding is not counted: it is work, not
  useful work.
GEMM rates: the machine's matrix-product rate at the blocks' Linear shapes with `rows` token
rows (4,096: the trunk pass's and Classifier.predict's token budget per batch), best of
`repeats` per shape, total FLOP over total time:
  fp32, bf16  torch.matmul of (rows x in) @ (in x out) in that dtype;
  int8        classifier/int8.py's quantized Linear (quantize_linear_int8) on fp32 inputs:
              what --precision int8 runs, activation quantization and dequantization included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import torch

GEMM_ROWS = 4096  # trunk_cache.build_store's and Classifier._run's tokens per batch
PRECISIONS = ("fp32", "bf16", "int8")


def linear_weights(blocks: Iterable[torch.nn.Module]) -> int:
    """The number of weights (bias excluded) of every nn.Linear in `blocks`."""
    return sum(mod.weight.numel() for b in blocks for mod in b.modules()
               if isinstance(mod, torch.nn.Linear))


def linear_shapes(blocks: Sequence[torch.nn.Module]) -> list[tuple[int, int]]:
    """The distinct (out_features, in_features) of the first block's nn.Linear layers (every
    block of a backbone has the same ones)."""
    if not blocks:
        return []
    return sorted({tuple(mod.weight.shape) for mod in blocks[0].modules()
                   if isinstance(mod, torch.nn.Linear)})


def forward_flop(lengths: Sequence[int], n_weights: int, n_layers: int, n_heads: int,
                 head_dim: int) -> float:
    """Total FLOP of `n_layers` blocks (with `n_weights` Linear weights in all) over texts of
    `lengths` tokens each: 2 x n_weights per token + causal attention (module docstring)."""
    tokens = sum(lengths)
    pairs = sum(t * (t + 1) / 2 for t in lengths)  # (query, key) pairs, causal
    return 2.0 * n_weights * tokens + n_layers * 4.0 * n_heads * head_dim * pairs


def gemm_rates(shapes: Sequence[tuple[int, int]], repeats: int = 5, rows: int = GEMM_ROWS,
               precisions: Sequence[str] = PRECISIONS) -> dict[str, float]:
    """GFLOP/s (int8: GOP/s) at `shapes` ((out, in) pairs), per precision (module docstring)."""
    rates = {}
    with torch.inference_mode():
        for precision in precisions:
            flop = seconds = 0.0
            for out_f, in_f in shapes:
                run = gemm_call(precision, rows, in_f, out_f)
                run()  # warm-up (and int8's weight packing)
                flop += 2.0 * rows * in_f * out_f
                seconds += best_time(run, repeats)
            rates[precision] = flop / seconds / 1e9 if seconds else math.nan
    return rates


def gemm_call(precision: str, rows: int, in_f: int, out_f: int):
    """A no-argument callable doing one (rows x in_f) -> (rows x out_f) product."""
    if precision == "int8":
        from gptcls.classifier.int8 import quantize_linear_int8

        q = quantize_linear_int8(torch.nn.Sequential(torch.nn.Linear(in_f, out_f, bias=False)))
        x = torch.randn(rows, in_f)
        return lambda: q(x)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, w = torch.randn(rows, in_f, dtype=dtype), torch.randn(in_f, out_f, dtype=dtype)
    return lambda: torch.matmul(a, w)


def best_time(run, repeats: int) -> float:
    best = math.inf
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def best_precision(rates: dict[str, float]) -> str:
    """The precision with the highest measured rate (NaN rates never win)."""
    return max(rates, key=lambda p: rates[p] if rates[p] == rates[p] else -math.inf)


def gemm_line(rates: dict[str, float]) -> str:
    """'fp32 290.1 GFLOP/s, bf16 165.0 GFLOP/s, int8 850.2 GOP/s (best: int8)'."""
    parts = [f"{p} {r:.1f} {'GOP/s' if p == 'int8' else 'GFLOP/s'}" for p, r in rates.items()]
    return ", ".join(parts) + f" (best: {best_precision(rates)})"


def shares(rate: float, precision: str, rates: dict[str, float]) -> tuple[str, str]:
    """`rate` as a % of the GEMM rate of its own `precision` and of the machine's best rate,
    each named: ("83% fp32", "25% int8")."""
    best = best_precision(rates)
    return (f"{rate / rates[precision]:.0%} {precision}", f"{rate / rates[best]:.0%} {best}")


def distinct_lengths(clf, texts: Sequence[str]) -> list[int]:
    """Token counts of the distinct sequences a gptcls Classifier runs for `texts` (as
    predict_proba cuts them: the run's truncation or windows; duplicates run once)."""
    from gptcls.classifier.encoding import unique_sequences

    ids, _ = clf.encode_long(list(texts))
    first, _ = unique_sequences(ids)
    return [len(ids[i]) for i in first]


def message_limit(clf, texts: Sequence[str], precision: str, rates: dict[str, float]) -> dict:
    """FLOP per message of a gptcls Classifier's forward pass over `texts` (all its blocks)
    and the messages/s the GEMM rate of `precision`, and of the best precision, allows."""
    backbone = clf.model.backbone
    cfg, blocks = backbone.config, list(backbone.blocks)
    lengths = distinct_lengths(clf, texts)
    flop = forward_flop(lengths, linear_weights(blocks), len(blocks), cfg.n_heads, cfg.head_dim)
    flop_msg = flop / len(texts)
    best = best_precision(rates)
    return {"precision": precision, "tokens_msg": sum(lengths) / len(texts),
            "flop_msg": flop_msg, "gemm_rate": rates[precision],
            "limit_msg_s": rates[precision] * 1e9 / flop_msg, "best": best,
            "best_limit_msg_s": rates[best] * 1e9 / flop_msg}


def limit_cells(msg_s: float, limit: dict) -> list[str]:
    """Table cells: precision, tokens/msg, FLOP/msg, GEMM rate, limit msg/s, achieved %,
    % of the best precision's limit (named)."""
    return [limit["precision"], f"{limit['tokens_msg']:.1f}", f"{limit['flop_msg']:.3g}",
            f"{limit['gemm_rate']:.1f}", f"{limit['limit_msg_s']:.1f}",
            f"{msg_s / limit['limit_msg_s']:.0%}",
            f"{msg_s / limit['best_limit_msg_s']:.0%} {limit['best']}"]
