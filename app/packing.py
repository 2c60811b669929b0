"""Serving layouts for a bf16 model's linear layers on CPU, chosen once at load (`pack`):

* ``int8`` (the default, QUANTIZE=int8): PyTorch's dynamic quantization on the x86 (fbgemm)
  kernels: weights in int8 with one scale per output channel, activations quantized per call.
  Decoding is bound by reading the weights, so half the bytes is most of the gain. The MLP's output
  projection (`down_proj`) stays bf16: its inputs carry outliers that one activation scale per call
  cannot hold (with it in int8, SmolLM2's answers lost coherence: "The answer is:", empty replies).
  Measured on our 2-core machine kind (SmolLM2-135M, one thread, greedy, a batch of 2): 42.8 ->
  31.6 ms per decoding step; the answers differ from bf16 ones after a few words but stay as
  coherent (the gate's behaviour criteria are measured on this layout).
* ``bf16`` (QUANTIZE=none, and the layers int8 skips): weights reordered once into oneDNN's blocked format, so each decoding
  step's matrix products skip the reorder that plain ``nn.Linear`` pays on every call (what
  PyTorch's compiler does for CPU inference, "freezing"): bit-identical results, a step of 10 rows
  66 -> 43 ms (2 threads).
* On a CPU without native bf16 (AVX2 without AVX-512) the whole model is served in float32 first
  (``float32`` with QUANTIZE=none; int8 layers stay int8): emulated bf16 products are slower.

A served model is for inference only. Copying it (``copy.deepcopy``, as training and adapter
merging do) gives plain ``nn.Linear`` layers again, with the weights as loaded: an int8 layer keeps
its loaded weight for that (the embedding's, when they are tied).
"""

from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear


@functools.cache
def supported() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def int8_supported() -> bool:
    return torch.backends.quantized.engine in ("x86", "fbgemm")


def _plain_copy(layer: torch.nn.Module, weight: torch.Tensor, memo) -> torch.nn.Linear:
    linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    linear.weight = weight if isinstance(weight, torch.nn.Parameter) else torch.nn.Parameter(weight)
    if layer.bias is not None:
        linear.bias = copy.deepcopy(layer.bias, memo)
    return linear


class PackedLinear(torch.nn.Module):
    """An ``nn.Linear`` whose weight is held in oneDNN's layout (not a parameter: no gradients)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 1)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def __deepcopy__(self, memo) -> torch.nn.Linear:
        return _plain_copy(self, self.packed.to_dense(), memo)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed"


class Int8Linear(torch.nn.Module):
    """An ``nn.Linear`` served with int8 weights (per output channel, symmetric); `weight` and
    `bias` stay as loaded, for copies."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        w = linear.weight.detach().float()
        scales = (w.abs().amax(1) / 127.5).clamp(min=1e-12).double()
        with warnings.catch_warnings():  # quantized tensors are deprecated for torchao, not a dependency of ours
            warnings.simplefilter("ignore", UserWarning)
            qweight = torch.quantize_per_channel(w, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8)
        self.quantized = QuantizedLinear(self.in_features, self.out_features, bias_=linear.bias is not None,
                                         dtype=torch.qint8)
        self.quantized.set_weight_bias(qweight, None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantized(x.float()).to(x.dtype)

    def __deepcopy__(self, memo) -> torch.nn.Linear:
        return _plain_copy(self, copy.deepcopy(self.weight, memo), memo)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


SERVING_LAYERS = (PackedLinear, Int8Linear)
KEEP_BF16 = frozenset({"down_proj"})  # layers int8 would spoil (see the module's docstring)


def pack(model: torch.nn.Module, device: str, quantize: str = "none") -> str:
    """Replace the bf16 ``nn.Linear`` layers of `model` (in place, on CPU) by serving ones; returns
    the layout used: "int8", "bf16" (packed), "float32" or "as stored" (float32 models, GPU)."""
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is torch.nn.Linear and child.weight.dtype == torch.bfloat16]
    if device != "cpu" or not targets:
        return "as stored"
    int8 = quantize == "int8" and int8_supported()
    if not supported():
        # emulated bf16 products are slower than float32 ones, most of all in batches (10 rows with
        # int8 layers: 129 -> 84 ms a step; SmolLM2-135M, 1 thread, torch limited to AVX2)
        model.float()
    for parent, name, child in targets:
        if int8 and name not in KEEP_BF16:
            setattr(parent, name, Int8Linear(child))
        elif supported():
            setattr(parent, name, PackedLinear(child))
    return "int8" if int8 else "bf16" if supported() else "float32"
