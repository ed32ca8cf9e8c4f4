"""bench/train_speed.py's transformers contender: GPT2ForSequenceClassification in a plain
PyTorch loop with train_classifier_simple's schedule, batches padded to their longest text."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import (
    BATCH,
    BOOK_LABELS,
    EVAL_FREQ,
    EVAL_ITER,
    LR,
    SEED,
    SPLITS,
    WEIGHT_DECAY,
    device,
    hf_model,
    pad_collate,
    split_examples,
)

from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer


def run_hf(args: argparse.Namespace, work: Path) -> dict:
    dev = device()
    t0 = time.perf_counter()
    loaders, max_length = hf_loaders(work)
    model = hf_model(dev)
    t1 = time.perf_counter()
    torch.manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    hist = hf_train(model, loaders, optimizer, dev, args.epochs)
    t2 = time.perf_counter()
    acc = {n: hf_accuracy(model, loader, dev) for n, loader in loaders.items()}
    t3 = time.perf_counter()
    return {"setup_s": t1 - t0, "train_s": t2 - t1, "eval_s": t3 - t2, "total_s": t3 - t0,
            "accuracy": acc, "history": hist, "max_length": max_length}


def hf_loaders(work: Path) -> tuple[dict, int]:
    """Token ids truncated to the longest training text (the chapter's max_length rule);
    batches of 8 padded to their own longest text with an attention mask."""
    from torch.utils.data import DataLoader

    tok = gpt2_tokenizer()
    splits = split_examples(work)
    ids = {n: tok.encode_batch([ex.text for ex in exs]) for n, exs in splits.items()}
    max_length = max(len(s) for s in ids["train"])
    items = {n: [(torch.tensor(s[:max_length]), BOOK_LABELS[ex.label])
                 for s, ex in zip(ids[n], splits[n], strict=True)] for n in SPLITS}
    torch.manual_seed(SEED)
    loaders = {n: DataLoader(items[n], batch_size=BATCH, shuffle=n == "train", num_workers=0,
                             drop_last=n == "train", collate_fn=pad_collate) for n in SPLITS}
    return loaders, max_length


def hf_logits(model: torch.nn.Module, batch: dict, dev: torch.device) -> torch.Tensor:
    return model(input_ids=batch["input_ids"].to(dev),
                 attention_mask=batch["attention_mask"].to(dev)).logits


def hf_loss(model: torch.nn.Module, loader, dev: torch.device, num_batches: int) -> float:
    total = 0.0
    n = min(num_batches, len(loader))
    with torch.no_grad():
        for _, batch in zip(range(n), loader, strict=False):
            logits = hf_logits(model, batch, dev)
            total += torch.nn.functional.cross_entropy(logits, batch["labels"].to(dev)).item()
    return total / max(n, 1)


def hf_accuracy(model: torch.nn.Module, loader, dev: torch.device,
                num_batches: int | None = None) -> float:
    model.eval()
    correct = seen = 0
    n = len(loader) if num_batches is None else min(num_batches, len(loader))
    with torch.no_grad():
        for _, batch in zip(range(n), loader, strict=False):
            pred = hf_logits(model, batch, dev).argmax(-1).cpu()
            correct += int((pred == batch["labels"]).sum())
            seen += len(pred)
    return correct / max(seen, 1)


def hf_train(model: torch.nn.Module, loaders: dict, optimizer: torch.optim.Optimizer,
             dev: torch.device, epochs: int) -> dict:
    """train_classifier_simple's schedule, for a transformers model."""
    hist: dict[str, list] = {"train_losses": [], "val_losses": [], "train_accs": [],
                             "val_accs": []}
    step = -1
    for epoch in range(epochs):
        model.train()
        for batch in loaders["train"]:
            optimizer.zero_grad()
            logits = hf_logits(model, batch, dev)
            torch.nn.functional.cross_entropy(logits, batch["labels"].to(dev)).backward()
            optimizer.step()
            step += 1
            if step % EVAL_FREQ == 0:
                model.eval()
                hist["train_losses"].append(hf_loss(model, loaders["train"], dev, EVAL_ITER))
                hist["val_losses"].append(hf_loss(model, loaders["validation"], dev, EVAL_ITER))
                model.train()
                print(f"Ep {epoch + 1} (Step {step:06d}): Train loss "
                      f"{hist['train_losses'][-1]:.3f}, Val loss {hist['val_losses'][-1]:.3f}")
        hist["train_accs"].append(hf_accuracy(model, loaders["train"], dev, EVAL_ITER))
        hist["val_accs"].append(hf_accuracy(model, loaders["validation"], dev, EVAL_ITER))
        print(f"Training accuracy: {hist['train_accs'][-1] * 100:.2f}% | "
              f"Validation accuracy: {hist['val_accs'][-1] * 100:.2f}%")
    return hist
