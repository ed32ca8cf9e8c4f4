"""The chapter's `torch.save(model.state_dict(), "review_classifier.pth")` imports as a run."""

import json

import torch
from helpers import book_model  # the book's GPTModel, re-implemented at tiny size
from torch import nn

from gptcls.classifier.classifier import Classifier
from gptcls.cli.main import main


def test_book_classifier_imports_and_predicts_like_the_chapter(tmp_path):
    torch.manual_seed(0)
    book = book_model(qkv_bias=True)
    book.tok_emb = nn.Embedding(50257, 16)  # GPT-2's vocabulary, so real text tokenizes
    book.pos_emb = nn.Embedding(32, 16)
    book.out_head = nn.Linear(16, 2)
    torch.save(book.state_dict(), tmp_path / "review_classifier.pth")
    out = tmp_path / "run"
    assert main(["import-book", str(tmp_path / "review_classifier.pth"), str(out),
                 "--max-length", "24", "--n-heads", "2"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pooling"] == "last-position" and cfg["max_length"] == 24

    clf = Classifier.load(out, device="cpu")
    texts = ["You won a free prize!", "See you at the station at six"]
    # The chapter's classify_review: truncate, pad with 50256 to max_length, last position.
    expected = []
    for text in texts:
        ids = clf.tokenizer.encode(text)[:24]
        ids = ids + [50256] * (24 - len(ids))
        with torch.no_grad():
            expected.append(torch.softmax(book(torch.tensor([ids]))[0, -1], -1))
    torch.testing.assert_close(torch.from_numpy(clf.predict_proba(texts)),
                               torch.stack(expected), atol=1e-5, rtol=0)


def test_chapter5_language_model_is_refused(tmp_path, capsys):
    torch.save(book_model(qkv_bias=False).state_dict(), tmp_path / "gpt.pth")
    assert main(["import-book", str(tmp_path / "gpt.pth"), str(tmp_path / "run"),
                 "--n-heads", "2"]) == 2
    assert "language model" in capsys.readouterr().err


def test_non_checkpoint_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "x.pth").write_bytes(b"not a checkpoint")
    assert main(["import-book", str(tmp_path / "x.pth"), str(tmp_path / "run")]) == 2
    assert "is not a PyTorch state dict" in capsys.readouterr().err
