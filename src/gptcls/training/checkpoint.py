"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the trainable weights, the optimizer and scheduler states, both random
generators (batch order and dropout), the loop position (epoch, micro-batch, this epoch's batch
order), the history so far, the early-stopping best, and the fingerprint of the cached trunk it
was trained on. It is written atomically (temporary file, then rename), so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptcls.errors import GptclsError
from gptcls.files import atomic_write

STATE_FILE = "train-state.pt"


def new_history() -> dict[str, list]:
    return {k: [] for k in ("train_losses", "val_losses", "examples_seen_at_eval", "train_accs",
                            "val_accs", "epoch_seconds")}


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (checkpoints, the early-stopping best)."""
    return {k: p.detach().cpu().clone() for k, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)


@dataclass
class LoopState:
    """Where the training loop is."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # micro-batches of the current epoch done
    step: int = -1  # optimizer steps done - 1 (the chapter's counter)
    examples_seen: int = 0
    order: list[list[int]] | None = None  # the current epoch's micro-batches
    hist: dict[str, list] = field(default_factory=new_history)


class Checkpointer:
    """Saves to and loads from `directory`/train-state.pt every `every` steps and each epoch."""

    def __init__(self, directory: str | Path, every: int | None = None, fingerprint: str = ""):
        if every is not None and every <= 0:
            raise GptclsError(f"checkpoint interval must be a positive number of steps, "
                              f"got {every}")
        self.path = Path(directory) / STATE_FILE
        self.every, self.fingerprint = every, fingerprint

    def due(self, step: int) -> bool:
        return self.every is not None and (step + 1) % self.every == 0

    def save(self, model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
             gen: torch.Generator, state: LoopState, stopper: Any = None) -> None:
        payload = {
            "weights": trainable_state(model),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "state": asdict(state), "fingerprint": self.fingerprint,
            "stopper": None if stopper is None else {
                "best": stopper.best, "best_epoch": stopper.best_epoch, "state": stopper.state},
        }
        atomic_write(self.path, lambda f: torch.save(payload, f))

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        payload = torch.load(self.path, weights_only=True)  # tensors and plain data only
        if payload.get("fingerprint") != self.fingerprint:
            raise GptclsError(f"{self.path} was trained on other data or weights (trunk "
                              "fingerprint differs); start a new run instead of --resume")
        return payload

    def restore(self, payload: dict[str, Any], model: torch.nn.Module,
                opt: torch.optim.Optimizer, sched: Any, gen: torch.Generator,
                stopper: Any = None) -> LoopState:
        load_trainable(model, payload["weights"])
        opt.load_state_dict(payload["optimizer"])
        sched.load_state_dict(payload["scheduler"])
        gen.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        if stopper is not None and payload["stopper"] is not None:
            s = payload["stopper"]
            stopper.best, stopper.best_epoch, stopper.state = s["best"], s["best_epoch"], s["state"]
        return LoopState(**payload["state"])

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
