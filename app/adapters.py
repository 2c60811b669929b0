"""A LoRA adapter served beside its base model: base and trained rows share one forward pass.

Comparing base and trained answers (the Generation tab, the API's compare, impact) decodes each
prompt on both models. With the adapter merged into a copy of the weights, every decoding step
reads two models' weights. Served here, the base's layers run once for all rows, and each adapted
layer adds its low-rank product (x A^T)(s B^T) for the rows of its adapter only. The decoder keeps
rows grouped by adapter, so each group is a slice of the batch (`segments`). Measured on our 2-core
machine kind (SmolLM2-135M, one base and one trained request, 2 threads): 40 ms per decoding step
against 53-58 ms for the two merged models.

peft loads and checks the adapter; its LoRA factors are then moved into the serving model's layers
(`AdaptedLinear`). Adapters that do not fit this form (DoRA, LoRA bias, layers other than plain
linear ones such as GPT-2's Conv1D) give None: models.apply_adapter then merges the adapter into a
copy of the weights.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
import weakref

import torch

from app.packing import SERVING_LAYERS

_state = threading.local()  # the segments of the batch being run on this thread
_keys = itertools.count(1)


class Adapter:
    """One adapter attached to a serving model; detached when nothing refers to it any more (the
    trained model it belongs to was replaced and its last request has ended)."""

    def __init__(self, name: str):
        self.name, self.key = name, next(_keys)

    def __repr__(self) -> str:
        return f"Adapter({self.name!r}, key={self.key})"


class AdaptedLinear(torch.nn.Module):
    """A linear layer plus the LoRA factors of the adapters attached to it, applied per segment."""

    def __init__(self, base: torch.nn.Module):
        super().__init__()
        self.base = base
        # key -> (A^T, s B^T) in float32: CPU products this small are several times faster than in bf16
        self.factors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        for key, start, stop in getattr(_state, "segments", ()):
            factors = self.factors.get(key)
            if factors is not None:
                y[start:stop] += ((x[start:stop].float() @ factors[0]) @ factors[1]).to(y.dtype)
        return y

    def __deepcopy__(self, memo) -> torch.nn.Module:
        return copy.deepcopy(self.base, memo)  # a copy is the base layer alone (training, merging)


@contextlib.contextmanager
def segments(rows: list[tuple[int, int, int]]):
    """Run a forward pass with rows [start, stop) of the batch using the adapter `key`."""
    _state.segments = rows
    try:
        yield
    finally:
        _state.segments = ()


def attach(model: torch.nn.Module, peft_model, name: str) -> Adapter | None:
    """Move the LoRA factors of `peft_model` (the adapter loaded by peft on a copy of `model`) into
    `model`'s layers; None when the adapter cannot be served this way."""
    from peft.tuners.lora import LoraLayer

    modules = dict(model.named_modules())
    found = []
    for path, layer in peft_model.named_modules():
        if not isinstance(layer, LoraLayer):
            continue
        path = path.removeprefix("base_model.model.")
        target = modules.get(path)
        if (list(layer.lora_A) != ["default"] or layer.use_dora.get("default")
                or getattr(layer, "lora_bias", {}).get("default")
                or not isinstance(target, (AdaptedLinear, torch.nn.Linear, *SERVING_LAYERS))):
            return None
        a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        found.append((path, a.t().float().contiguous(), (b.float() * layer.scaling["default"]).t().contiguous()))
    if not found:
        return None
    adapter = Adapter(name)
    layers = []
    for path, a_t, b_t in found:
        layer = modules[path]
        if not isinstance(layer, AdaptedLinear):
            parent, _, child = path.rpartition(".")
            layer = AdaptedLinear(layer)
            setattr(modules[parent] if parent else model, child, layer)
        layer.factors[adapter.key] = (a_t, b_t)
        layers.append(layer)
    weakref.finalize(adapter, _detach, layers, adapter.key)
    return adapter


def _detach(layers: list[AdaptedLinear], key: int) -> None:
    for layer in layers:
        layer.factors.pop(key, None)
