"""The shared contract of every registered cell as a one-step module, and how to register one.

:class:`CellModuleSuite` holds tests of a cell module (``CellSpec.module``) against its torch.nn
twin (``CellSpec.torch_cell``, where there is one), the naive reference (:data:`reference.
REFERENCES`) and autograd, in float64. A test module subclasses it as ``TestSomething`` and
provides a ``cell`` fixture that yields a registered cell's name: every cell of the registry in
test_cells.py, a toy cell registered by :func:`registered` in test_toy_cell.py.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from reference import REFERENCES, Reference
from seqlab.cells import CELLS, CellSpec, register_cell, unregister_cell

I, H, B = 3, 5, 4


@contextmanager
def registered(spec: CellSpec, reference: Reference):
    """Register a cell and its naive reference for the duration of a block; yields its name."""
    register_cell(spec)
    REFERENCES[spec.name] = reference
    try:
        yield spec.name
    finally:
        unregister_cell(spec.name)
        del REFERENCES[spec.name]


def paired(name: str) -> bool:
    """Whether the cell's state is (h, c) rather than h alone."""
    return len(CELLS[name].state) == 2


def parts(state) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


def make(name: str, bias: bool = True, seed: int = 0) -> tuple[nn.Module, nn.Module | None]:
    """A seqlab cell and its torch.nn twin (None without one) in float64, independently
    initialised."""
    spec = CELLS[name]
    torch.manual_seed(seed)
    cell = spec.module(I, H, bias=bias).double()
    twin = None if spec.torch_cell is None else spec.torch_cell(I, H, bias=bias).double()
    return cell, twin


def twin_of(name: str, bias: bool = True, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    cell, twin = make(name, bias, seed)
    if twin is None:
        pytest.skip(f"{name} has no torch.nn twin")
    return cell, twin


def random_state(name: str, seed: int = 1, batch: int = B):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, H, generator=g, dtype=torch.float64)
    if paired(name):
        return h, torch.randn(batch, H, generator=g, dtype=torch.float64)
    return h


def random_input(seed: int = 2, batch: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, I, generator=g, dtype=torch.float64)


def torch_step(name: str, twin: nn.Module, x, state):
    """torch.nn's cell call in seqlab's contract: (h_t, state_t)."""
    if paired(name):
        h, c = twin(x, state)
        return h, (h, c)
    h = twin(x, state)
    return h, h


@torch.no_grad()
def fill_asymmetric(cell: nn.Module, scale: float = 0.8) -> None:
    """Deterministic, non-symmetric weights: no two entries, rows or gate blocks alike.

    Constant weights would make every unit (and every gate block of one kind) identical and so
    hide a swapped gate order; sin of distinct arguments does not.
    """
    for k, p in enumerate(cell.parameters()):
        idx = torch.arange(p.numel(), dtype=torch.float64)
        p.copy_((scale * torch.sin(0.73 * idx + 1.9 * k + 0.4)).reshape(p.shape))


class CellModuleSuite:
    """Every cell module: torch.nn's names and layout, parity with its twin and the reference,
    gradcheck, a zero initial state and shape errors. Needs a ``cell`` fixture (a name)."""

    @pytest.mark.parametrize("bias", [True, False])
    def test_parameter_names_and_shapes(self, cell, bias):
        module, twin = make(cell, bias)
        ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        rows = CELLS[cell].blocks * H  # the spec's packed layout
        want = {"weight_ih": (rows, I), "weight_hh": (rows, H)}
        if bias:
            want |= {"bias_ih": (rows,), "bias_hh": (rows,)}
        want = {k: v for k, v in want.items() if k in CELLS[cell].weight_names}
        assert ours == want
        if twin is not None:
            theirs = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
            assert ours == theirs

    @pytest.mark.parametrize("bias", [True, False])
    def test_parity_seqlab_weights_into_torch(self, cell, bias):
        module, twin = twin_of(cell, bias, seed=3)
        twin.load_state_dict(module.state_dict(), strict=True)
        x, state = random_input(), random_state(cell)
        for s in (state, None):
            h, new_state = module(x, s)
            h_ref, state_ref = torch_step(cell, twin, x, s)
            assert_close(h, h_ref)
            assert_close(new_state, state_ref)

    def test_parity_torch_weights_into_seqlab(self, cell):
        module, twin = twin_of(cell, seed=4)
        module.load_state_dict(twin.state_dict(), strict=True)
        x, state = random_input(5), random_state(cell, 6)
        h, new_state = module(x, state)
        h_ref, state_ref = torch_step(cell, twin, x, state)
        assert_close(h, h_ref)
        assert_close(new_state, state_ref)

    @pytest.mark.parametrize("bias", [True, False])
    def test_parity_with_reference(self, cell, bias):
        module, _ = make(cell, bias, seed=7)
        fill_asymmetric(module)  # also covers the identity-initialised IRNN with generic weights
        x, state = random_input(8), random_state(cell, 9)
        weights = (module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh)
        h, new_state = module(x, state)
        ref_state, _ = REFERENCES[cell].step(x, parts(state), *weights)
        assert_close(parts(new_state), ref_state)
        assert_close(h, ref_state[0])

    def test_step_function_is_the_modules(self, cell):
        """The registry's step (what Recurrent runs) computes what the module computes."""
        module, _ = make(cell, seed=8)
        fill_asymmetric(module)
        x, state = random_input(9), random_state(cell, 10)
        weights = (module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh)
        new, gates = CELLS[cell].step(x, parts(state), *weights)
        assert_close(new, parts(module(x, state)[1]))
        assert len(gates) == len(CELLS[cell].gates)

    def test_gradcheck(self, cell):
        module, _ = make(cell, seed=10)
        params = {k: v.detach().clone().requires_grad_() for k, v in module.named_parameters()}
        x = random_input(11, batch=2).requires_grad_()
        state = tuple(s.requires_grad_() for s in parts(random_state(cell, 12, batch=2)))
        keys = list(params)

        def f(x, *rest):
            p = dict(zip(keys, rest[:len(keys)], strict=True))
            s = rest[len(keys):]
            h, new_state = functional_call(module, p, (x, s if paired(cell) else s[0]))
            return new_state if paired(cell) else h

        assert torch.autograd.gradcheck(f, (x, *params.values(), *state))

    def test_initial_state_is_zero(self, cell):
        module, _ = make(cell, seed=26)
        x = random_input(27)
        state = module.initial_state(B)
        for s in parts(state):
            assert s.shape == (B, H) and s.dtype == torch.float64
            assert not s.any()
        assert len(parts(state)) == len(CELLS[cell].state)
        assert_close(module(x)[0], module(x, state)[0])

    @pytest.mark.parametrize("shape", [(B, I + 1), (B,), (B, 1, I)])
    def test_wrong_input_shape(self, cell, shape):
        module, _ = make(cell)
        kind = type(module).__name__
        x = torch.zeros(shape, dtype=torch.float64)
        with pytest.raises(ValueError, match=rf"^{kind}: expected input of shape \(B, {I}\), "
                                             rf"got {re.escape(str(shape))}$"):
            module(x)
