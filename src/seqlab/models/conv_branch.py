"""LSTM-FCN's fully convolutional branch over padded batches of variable-length sequences.

Blocks of a Conv1d with "same" padding, batch norm and a ReLU (FCN: Wang et al. 2017; beside an
LSTM in LSTM-FCN, Karim et al. 2018), optionally squeeze-and-excitation after each block but the
last (MLSTM-FCN, Karim et al. 2019), then the mean over the valid steps. Every statistic (batch
norm's in training, the channel means of squeeze-and-excitation, the final mean) is taken over
the valid steps only, and every block's output is zero past each end, so a sequence's features
do not depend on the padding around it. Shapes: B batch, T time, C channels, F filters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqlab.arguments import is_count
from seqlab.attention import masked_mean


class MaskedBatchNorm(nn.BatchNorm1d):
    """Batch norm over the valid steps only: h (B, C, T), mask (B, T) -> (B, C, T), zeros past
    each end. In training the mean and variance of each channel are those of the valid steps
    of the batch (the running statistics updated from them); in evaluation, or for a batch of
    a single valid step, the running ones.
    torch.nn.BatchNorm1d's keys and arithmetic, on the valid steps gathered into (N, C)."""

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        if (not self.training or int(mask.sum()) < 2) and self.track_running_stats:
            # per step, no gathering: evaluation, or a batch of one valid step in all (whose
            # variance is undefined) normalised with the running statistics
            return nn.functional.batch_norm(h, self.running_mean, self.running_var,
                                            self.weight, self.bias, False, 0.0, self.eps) \
                * mask[:, None, :].to(h.dtype)
        steps = h.transpose(1, 2)  # (B, T, C)
        out = steps.new_zeros(steps.shape)
        out[mask] = super().forward(steps[mask])  # (N, C): the valid steps of every sequence
        return out.transpose(1, 2)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation over the valid steps: h (B, C, T) -> h scaled per channel by
    sigmoid(W_2 ReLU(W_1 m)), m (B, C) the mean of each channel over the valid steps."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.squeeze = nn.Linear(channels, inner, bias=False)  # W_1
        self.excite = nn.Linear(inner, channels, bias=False)  # W_2

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        means = masked_mean(h, mask[:, None, :], -1)  # (B, C)
        scale = torch.sigmoid(self.excite(torch.relu(self.squeeze(means))))
        return h * scale[..., None]


class ConvBranch(nn.Module):
    """The fully convolutional branch: x (B, T, I) zero past each end, mask (B, T) -> g (B, F),
    equations (7)-(8).

    State-dict keys: ``convs.l.weight`` (F_l, F_{l-1}, k_l) and ``convs.l.bias`` (F_l,), torch.nn
    Conv1d's; ``norms.l.*`` BatchNorm1d's (weight, bias, running_mean, running_var,
    num_batches_tracked); ``excite.l.squeeze.weight``, ``excite.l.excite.weight`` with
    squeeze-and-excitation (every block but the last)."""

    def __init__(self, width: int, filters: tuple[int, ...], kernels: tuple[int, ...],
                 squeeze_excite: bool = False) -> None:
        super().__init__()
        if not filters or len(filters) != len(kernels):
            raise ValueError(f"Classifier: conv_filters and conv_kernels need one entry per "
                             f"block, got {list(filters)} and {list(kernels)}")
        for value in (*filters, *kernels):
            if not is_count(value):
                raise ValueError(f"Classifier: conv filters and kernels must be positive ints, "
                                 f"got {list(filters)} and {list(kernels)}")
        sizes = (width, *filters)
        self.filters, self.kernels = tuple(filters), tuple(kernels)
        self.convs = nn.ModuleList(nn.Conv1d(sizes[n], sizes[n + 1], kernels[n])
                                   for n in range(len(filters)))
        self.norms = nn.ModuleList(MaskedBatchNorm(f) for f in filters)
        self.excite = nn.ModuleList(SqueezeExcite(f) for f in filters[:-1]) \
            if squeeze_excite else None

    @property
    def size(self) -> int:
        return self.filters[-1]  # F

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # x is zero past each end, and so is every block's output (the masked batch norm
        # gives zeros there, ReLU and the channel scales keep them): each conv reads zeros
        # past a sequence's end, as "same" padding of the sequence alone would give it
        h = x.transpose(1, 2)  # (B, I, T)
        for n, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            k = conv.kernel_size[0]  # "same": (k - 1) // 2 zeros before, the rest after
            h = conv(nn.functional.pad(h, ((k - 1) // 2, k - 1 - (k - 1) // 2)))
            h = torch.relu(norm(h, mask))  # (7)
            if self.excite is not None and n < len(self.excite):
                h = self.excite[n](h, mask)
        return masked_mean(h, mask[:, None, :], -1)  # (8) (B, F)
