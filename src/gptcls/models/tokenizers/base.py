"""What the rest of gptcls needs from a tokenizer.

Every tokenizer encodes user text as plain text: a special-token string typed by a user (e.g.
"<|endoftext|>") is split like any other text, so data can never inject control tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

TOKENIZER_FILE = "tokenizer.json"


class Tokenizer(ABC):
    """What the rest of gptcls needs from a tokenizer."""

    name: str
    vocab_size: int
    eot_id: int
    pad_id: int
    bos_id: int | None = None  # prepended to every encoding when add_bos is true
    add_bos: bool = False

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    @abstractmethod
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-serialisable description that `load_tokenizer` turns back into this tokenizer."""

    @abstractmethod
    def save(self, directory: Path) -> dict[str, Any]:
        """Write the files `load_tokenizer` needs into `directory`; return the spec to store."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} vocab={self.vocab_size} eot={self.eot_id}>"
