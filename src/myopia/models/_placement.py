"""Where a model runs and in what precision: one :class:`Placement` per run.

``device``: ``auto`` (a GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
``dtype``: ``float32``, ``bfloat16`` or ``float16``; ``None`` keeps the default, float32, so a
CPU run with no options is exactly what it always was.

Experiments that take gradients through a pretrained model (their exactness tests are in
float32) ask for :meth:`Placement.for_gradients`: float32 on whatever device the run uses.

On a GPU, :func:`memory_budgets` sizes scoring batches from the free memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .._errors import UserError

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: the CLI checks a placement before anything loads torch

DTYPES = ("float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Placement:
    device: str = "auto"
    dtype: str | None = None  # None: float32

    def __post_init__(self):
        if not _DEVICE.match(self.device):
            raise UserError(f"unknown device {self.device!r}; accepted: auto, cpu, cuda, cuda:N")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; accepted: {', '.join(DTYPES)}")

    def resolved_device(self) -> str:
        """The concrete device: ``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``;
        a GPU asked for and not visible is a UserError."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UserError(f"--device {self.device}: no GPU is visible to torch here; use --device cpu or auto")
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            if index >= torch.cuda.device_count():
                raise UserError(
                    f"--device {self.device}: torch sees {torch.cuda.device_count()} GPU(s), "
                    f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
                )
        return self.device

    def check(self) -> Placement:
        """Fail now (one line) rather than in the first cell."""
        self.resolved_device()
        return self

    def for_gradients(self) -> Placement:
        return replace(self, dtype="float32")

    def describe(self) -> dict:
        """What a cell's record keeps: the device it ran on and the precision."""
        return {"device": self.resolved_device(), "dtype": self.dtype or "float32"}


def torch_dtype(name: str | None) -> torch.dtype:
    import torch

    if name is not None and name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}; accepted: {', '.join(DTYPES)}")
    return getattr(torch, name or "float32")


@dataclass(frozen=True)
class MemoryBudgets:
    """How much one scoring batch may hold: rows, tokens (every row's cached keys/values and
    activations) and logit elements."""

    batch_size: int
    tokens: int
    logits: int


CPU_BUDGETS = MemoryBudgets(batch_size=64, tokens=8192, logits=128 * 1024 * 1024)


def memory_budgets(free_bytes: int, n_layers: int, hidden: int, elem_bytes: int) -> MemoryBudgets:
    """Budgets from free memory: a quarter of it for tokens, a quarter for float32 logits, the
    rest left for the weights' working space. A token costs its keys and values in every layer
    plus its activations (a few widths of the MLP). Never below the CPU budgets."""
    per_token = elem_bytes * hidden * (2 * n_layers + 16)
    tokens = max(CPU_BUDGETS.tokens, free_bytes // 4 // per_token)
    logits = max(CPU_BUDGETS.logits, free_bytes // 4 // 4)
    batch = max(CPU_BUDGETS.batch_size, min(1024, tokens // 256))
    return MemoryBudgets(batch_size=batch, tokens=tokens, logits=logits)


def budgets_for(model, device: torch.device) -> MemoryBudgets:
    """The CPU budgets on a CPU (results unchanged); on a GPU, budgets from its free memory."""
    if device.type != "cuda":
        return CPU_BUDGETS
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    config = model.config.get_text_config()
    elem = next(model.parameters()).element_size()
    return memory_budgets(free, config.num_hidden_layers, config.hidden_size, elem)
