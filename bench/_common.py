"""Pieces shared by bench/train_speed.py and bench/infer_speed.py (see their docstrings).

The book's model and transformers' are built the same way in both scripts: gpt2-small shape,
random weights (speed does not depend on the values), a 2-class head.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptcls.data import partition
from gptcls.data import sms as gdata
from gptcls.data.splits import read_split_csv
from gptcls.models.tokenizers.base import Tokenizer

# The UCI file, beside the repository: <repo>/../shared/data/sms_spam_collection/SMSSpamCollection
DEFAULT_DATA = (Path(__file__).resolve().parents[2]
                / "shared/data/sms_spam_collection/SMSSpamCollection")
SEED = 123
PAD_ID = 50256  # GPT-2's <|endoftext|>, the chapter's pad token
BOOK_LABELS = {"ham": 0, "spam": 1}
SPLITS = ("train", "validation", "test")
# train_speed's schedule, the chapter's: batch 8, AdamW, a loss evaluation every 50 steps on
# 5 batches.
BATCH, LR, WEIGHT_DECAY, EVAL_FREQ, EVAL_ITER = 8, 5e-5, 0.1, 50, 5
# The chapter's BASE_CONFIG for "gpt2-small (124M)".
BASE_CONFIG = {"vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_layers": 12,
               "n_heads": 12, "drop_rate": 0.0, "qkv_bias": True}


def device() -> torch.device:
    """The chapter's rule, used for every contender."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def book_model(dev: torch.device) -> torch.nn.Module:
    """Chapter 6, sections 6.4-6.5: GPTModel (random weights here; the chapter loads GPT-2's),
    all frozen, a new 2-class out_head, then the last block and the final norm trainable."""
    from llms_from_scratch.ch04 import GPTModel

    torch.manual_seed(SEED)
    model = GPTModel(BASE_CONFIG)
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    torch.manual_seed(SEED)
    model.out_head = torch.nn.Linear(in_features=BASE_CONFIG["emb_dim"], out_features=2)
    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    return model.to(dev)


def hf_model(dev: torch.device) -> torch.nn.Module:
    """transformers' gpt2-small (GPT2Config defaults) classifier, random init, dropout 0 as in
    the chapter's config; transformer.h[-1], transformer.ln_f and the score head trainable."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(SEED)
    config = GPT2Config(num_labels=2, pad_token_id=PAD_ID,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2ForSequenceClassification(config)
    model.requires_grad_(False)
    for module in (model.transformer.h[-1], model.transformer.ln_f, model.score):
        module.requires_grad_(True)
    return model.to(dev)


def pad_collate(batch: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest sequence; attention_mask marks the real tokens."""
    seqs = [s for s, _ in batch]
    x = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=PAD_ID)
    mask = torch.zeros_like(x)
    for i, s in enumerate(seqs):
        mask[i, : len(s)] = 1
    return {"input_ids": x, "attention_mask": mask,
            "labels": torch.tensor([y for _, y in batch])}


def chapter_max_length(data: Path, tokenizer: Tokenizer) -> int:
    """The chapter's max_length: the longest text (in tokens) of the balanced 70% training
    split (seed 123), which is also what gptcls's run_training uses."""
    examples = partition.balance_undersample(gdata.read_sms_file(data), seed=SEED)
    train = partition.random_split(examples, seed=SEED)[0]
    return max(len(ids) for ids in tokenizer.encode_batch([ex.text for ex in train]))


def split_examples(work: Path) -> dict[str, list]:
    """train_speed's splits (WORKDIR/splits/*.csv): the examples every contender trains on."""
    return {n: read_split_csv(work / "splits" / f"{n}.csv") for n in SPLITS}
