"""Recurrent cells, one file each, written from their equations, and their registry.

Each cell has the parameter names and packed layout of its torch.nn twin (``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``), so a state dict moves between the two unchanged; the
cells whose gates read x_t alone (``mingru``, ``minlstm``) keep ``weight_ih`` and ``bias_ih``.
Its step function takes the weights as arguments: the cell module calls it, and so does the
explicit path of :class:`seqlab.recurrent.Recurrent`, so there is one implementation of each
equation. :data:`CELLS` maps a name to its :class:`CellSpec` (module, step, state kind, gates,
initialisation, fused kernel); a new cell is a file here and one entry in ``BUILT_IN`` below,
or a :func:`register_cell` call from anywhere.
"""

from seqlab.cells.base import Cell, State
from seqlab.cells.gru import GRU_SPEC, GRUCell, GRUGates, gru_step
from seqlab.cells.lstm import (
    LSTM_SPEC,
    LSTMCell,
    LSTMGates,
    init_chrono,
    init_forget_bias,
    lstm_step,
)
from seqlab.cells.mingru import MINGRU_SPEC, MinGRUCell, mingru_scan, mingru_step
from seqlab.cells.minlstm import MINLSTM_SPEC, MinLSTMCell, minlstm_scan, minlstm_step
from seqlab.cells.registry import (
    CELLS,
    GATE_NAMES,
    CellSpec,
    InitOptions,
    LayerWeights,
    register_cell,
    replaced_cell,
    unregister_cell,
)
from seqlab.cells.rnn import IRNN_SPEC, RNN_SPEC, RNNCell, init_identity, rnn_step

# registered in this order, which is the order of the model names (--model rnn, irnn, ...)
BUILT_IN = (RNN_SPEC, IRNN_SPEC, LSTM_SPEC, GRU_SPEC, MINGRU_SPEC, MINLSTM_SPEC)
for _spec in BUILT_IN:
    register_cell(_spec)

__all__ = ["BUILT_IN", "CELLS", "Cell", "GATE_NAMES", "CellSpec", "GRUCell", "GRUGates", "GRU_SPEC",
           "IRNN_SPEC", "InitOptions", "LSTMCell", "LSTMGates", "LSTM_SPEC", "LayerWeights",
           "MINGRU_SPEC", "MINLSTM_SPEC", "MinGRUCell", "MinLSTMCell", "RNNCell", "RNN_SPEC",
           "State", "gru_step", "init_chrono", "init_forget_bias", "init_identity", "lstm_step",
           "mingru_scan", "mingru_step", "minlstm_scan", "minlstm_step", "register_cell",
           "replaced_cell", "rnn_step", "unregister_cell"]
