"""What every cell module shares: torch.nn's parameter names, packed layout and default init.

Shapes: B batch, I input size, H hidden size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqlab.arguments import is_count

State = Tensor | tuple[Tensor, Tensor]


class Cell(nn.Module):
    """Parameter set-up of a one-step cell: ``num_chunks`` gate blocks stacked along the first
    axis of ``weight_ih`` (blocks H, I), ``weight_hh`` (blocks H, H), ``bias_ih`` and ``bias_hh``
    (blocks H,), as in torch.nn. Subclasses write ``forward(x_t, state=None) -> (h_t, state)``.
    """

    num_chunks = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not is_count(value):
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, "
                                 f"got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        rows = self.num_chunks * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_uniform(self, self.hidden_size)

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        device = device or self.weight_ih.device
        dtype = dtype or self.weight_ih.dtype
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (B, {self.input_size}), "
                f"got {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


@torch.no_grad()
def init_uniform(module: nn.Module, hidden_size: int) -> None:
    """torch.nn's default for recurrent weights: every parameter from U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        nn.init.uniform_(p, -bound, bound)
