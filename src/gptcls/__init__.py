"""gptcls: fine-tune pretrained GPT-style language models into text classifiers."""

from gptcls.errors import GptclsError

__version__ = "0.1.0"
__all__ = ["GptclsError", "__version__"]
