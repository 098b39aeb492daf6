"""seqlab: deep sequence modelling on PyTorch.

Recurrent networks (RNN, IRNN, LSTM, GRU) written from their equations and run fused or
explicitly, trained by truncated backpropagation through time, and instruments to look inside
them. The API mirrors the command line: :func:`train`, :func:`generate`, :func:`evaluate`,
:func:`load_run`, :func:`load_data`, :func:`build_model`.
"""

from seqlab.api import evaluate, load_data, load_run, resume, train  # noqa: E402
from seqlab.config import ModelConfig, TrainConfig  # noqa: E402
from seqlab.generate import generate  # noqa: E402
from seqlab.models import build_model  # noqa: E402
from seqlab.version import __version__  # noqa: E402

__all__ = ["ModelConfig", "TrainConfig", "build_model", "evaluate", "generate", "load_data",
           "load_run", "resume", "train", "__version__"]
