"""Real offline GGUFs against transformers loading the same file (fp32): max |logit diff| on 20
SMS texts, whether our tokenizer gives transformers' ids on them, and both models' greedy
continuation of "The capital of France is".

    .venv/bin/python bench/gguf_exactness.py [NAME ...]   (default: every offline model)

NAME is a key of gptcls.models.weights.offline.OFFLINE_MODELS; files are fetched into the
cache on first use. Prints one line per model and exits 1 if a diff exceeds 1e-3.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from gptcls.models.tokenizers.gguf import tokenizer_from_gguf
from gptcls.models.weights.gguf import config_from_gguf, open_reader, state_dict_from_gguf
from gptcls.models.weights.offline import OFFLINE_MODELS, locate_offline_gguf
from gptcls.models.weights.pretrained import load_backbone

SMS = (Path(__file__).resolve().parents[2]
       / "shared/data/sms_spam_collection/SMSSpamCollection")
TOL = 1e-3


def sms_texts(n: int = 20) -> list[str]:
    lines = SMS.read_text(encoding="utf-8").splitlines()[:n]
    return [ln.split("\t", 1)[1] for ln in lines]


def ours(path: Path) -> tuple[torch.nn.Module, object]:
    reader = open_reader(path)
    config = config_from_gguf(reader)
    model = load_backbone(config, state_dict_from_gguf(reader, config)).eval()
    return model, tokenizer_from_gguf(reader)


def theirs(path: Path) -> tuple[torch.nn.Module, object]:
    import transformers as tf

    tok = tf.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = tf.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                    dtype=torch.float32).eval()
    return model, tok


@torch.no_grad()
def greedy(model: torch.nn.Module, ids: list[int], n: int, hf: bool) -> list[int]:
    x = torch.tensor([ids])
    for _ in range(n):
        logits = model(x).logits if hf else model(x)
        x = torch.cat([x, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return x[0, len(ids):].tolist()


@torch.no_grad()
def compare(name: str) -> float:
    path = locate_offline_gguf(name)
    t0 = time.time()
    our_model, our_tok = ours(path)
    t1 = time.time()
    hf_model, hf_tok = theirs(path)
    t2 = time.time()
    worst, same_ids = 0.0, 0
    for text in sms_texts():
        ids = hf_tok(text).input_ids
        same_ids += our_tok.encode(text) == ids
        x = torch.tensor([ids])
        worst = max(worst, (our_model(x) - hf_model(x).logits).abs().max().item())
    prompt = hf_tok("The capital of France is").input_ids
    print(f"{name}: max|diff| {worst:.2e} over 20 SMS; our ids == transformers' on "
          f"{same_ids}/20; load ours {t1 - t0:.1f}s, transformers {t2 - t1:.1f}s")
    print(f"  ours:         {hf_tok.decode(greedy(our_model, prompt, 12, False))!r}")
    print(f"  transformers: {hf_tok.decode(greedy(hf_model, prompt, 12, True))!r}")
    return worst


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"offline models (default: "
                        f"all of {', '.join(OFFLINE_MODELS)})")
    names = parser.parse_args(argv).names
    if unknown := [n for n in names if n not in OFFLINE_MODELS]:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: "
                     f"{', '.join(OFFLINE_MODELS)}")
    worst = {name: compare(name) for name in names or list(OFFLINE_MODELS)}
    return int(any(v > TOL for v in worst.values()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
