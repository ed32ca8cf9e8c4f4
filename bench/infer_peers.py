"""bench/infer_speed.py's peers: chapter 6's classify_review loop on the book's GPTModel, and
transformers' GPT2ForSequenceClassification in batches; and the timer every contender uses."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from _common import book_model, device, hf_model, pad_collate

from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer

WARMUP = 8  # texts each contender classifies before it is timed

def timed(predict: Callable[[list[str]], object], texts: list[str]) -> tuple[object, float]:
    predict(texts[:WARMUP])
    t0 = time.perf_counter()
    out = predict(texts)
    return out, time.perf_counter() - t0



def classify_review(text, model, tokenizer, device, max_length=None, pad_token_id=50256):
    """Copied from chapter 6 (llms_from_scratch.ch06.classify_review), unchanged."""
    model.eval()

    # Prepare inputs to the model
    input_ids = tokenizer.encode(text)
    supported_context_length = model.pos_emb.weight.shape[0]

    # Truncate sequences if they too long
    input_ids = input_ids[:min(max_length, supported_context_length)]

    # Pad sequences to the longest sequence
    input_ids += [pad_token_id] * (max_length - len(input_ids))
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)  # add batch dimension

    # Model inference
    with torch.no_grad():
        logits = model(input_tensor)[:, -1, :]  # Logits of the last output token
    predicted_label = torch.argmax(logits, dim=-1).item()

    # Return the classified result
    return "spam" if predicted_label == 1 else "not spam"



def run_chapter(texts: list[str], max_length: int, limit: int | None) -> dict:
    dev = device()
    model = book_model(dev)
    tokenizer = gpt2_tokenizer()  # .encode(text): tiktoken "gpt2" ids, built offline
    sample = texts[:limit] if limit else texts

    def loop(batch: list[str]) -> list[str]:
        return [classify_review(t, model, tokenizer, dev, max_length=max_length) for t in batch]

    labels, secs = timed(loop, sample)
    return {"seconds": secs * len(texts) / len(sample), "measured_texts": len(sample),
            "measured_seconds": secs, "labels": labels}


def run_hf(texts: list[str], max_length: int, batch_size: int) -> dict:
    dev = device()
    model = hf_model(dev).eval()
    tokenizer = gpt2_tokenizer()

    @torch.inference_mode()
    def predict(batch_texts: list[str]) -> np.ndarray:
        ids = [s[:max_length] for s in tokenizer.encode_batch(batch_texts)]
        out = []
        for b in range(0, len(ids), batch_size):
            batch = pad_collate([(torch.tensor(s), 0) for s in ids[b:b + batch_size]])
            logits = model(input_ids=batch["input_ids"].to(dev),
                           attention_mask=batch["attention_mask"].to(dev)).logits
            out.append(torch.softmax(logits.float(), -1).cpu())
        return torch.cat(out).numpy()

    probs, secs = timed(predict, texts)
    return {"seconds": secs, "probs": probs}
