"""CPU kernels for the model's matmuls: prepacked bf16, int8 and int4 weights.

Decoding one token reads every weight once, so on a CPU its speed is memory bandwidth over
weight bytes. Eager bf16 `nn.Linear` does not reach that floor; these modules do. After loading,
`prepare_for_cpu` swaps them in for the model's Linear layers (and the tied lm_head); the model's
code (model.py) is unchanged and knows nothing of them. GPUs keep plain fp16 `nn.Linear`.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from santa_lsp.engine import kernels
from santa_lsp.engine.model import GPTBigCode

# One (scale, min) pair per this many inputs of an int4 weight row (the native kernel's layout).
INT4_GROUP = kernels.GROUP


class PackedBF16Linear(nn.Module):
    """bf16 linear through oneDNN with the weight reordered once into its blocked layout
    (AMX / AVX512-BF16 kernels; accumulation in fp32)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().to(torch.bfloat16).contiguous()
        self.out_features, self.in_features = w.shape
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(w, 1), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class Int8Linear(nn.Module):
    """int8 weights (one scale per output channel) with activations quantized on the fly per
    call (fbgemm dynamic quantization, VNNI int8 dot products, int32 accumulation): a quarter of
    fp32's bytes per token. Lossy; opt-in through dtype `int8`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        w = weight.detach().float().contiguous()
        self.out_features, self.in_features = w.shape
        scale = (w.abs().amax(dim=1).clamp(min=1e-8) / 127.0).double()
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch flags the quantized-tensor API as legacy
            qweight = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
            b = None if bias is None else bias.detach().float()
            self._packed = torch.ops.quantized.linear_prepack(qweight, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed, False)


class Int4Linear(nn.Module):
    """4-bit weights, asymmetric, one (scale, min) per group of 64 inputs: an eighth of fp32's
    bytes. Where the native kernel builds (engine/kernels.py: x86 and a C compiler), activations
    are quantized to int8 per group and the products run on integer dot products, near the
    bandwidth floor at batch 1; elsewhere torch's int4 kernel with bf16 activations (its fp32 path
    is 30x slower) on the same 4-bit values. Lossy; opt-in, dtype `int4`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        q, scale, mins = kernels.quantize_int4(weight)
        n, k = q.shape
        self.out_features, self.in_features = n, k
        self.native = k % (2 * INT4_GROUP) == 0 and kernels.native_enabled()
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous(), persistent=False)
        if self.native:
            self.register_buffer("packed", kernels.pack_native(q), persistent=False)
            self.register_buffer("scale", scale.contiguous(), persistent=False)
            self.register_buffer("mins", mins.contiguous(), persistent=False)
            return
        # torch's kernel computes w = (q - 8) * scale + zero, so zero = min + 8 * scale.
        s, m = scale.float(), mins.float()
        scales_zeros = torch.stack([s.t(), (m + 8 * s).t()], -1)  # [k/G, n, 2]
        self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu(q, 1), persistent=False)
        self.register_buffer("scales_zeros", scales_zeros.to(torch.bfloat16).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            return kernels.native_mm(x, self.packed, self.scale, self.mins, self.bias)
        y = torch._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), self.packed, INT4_GROUP, self.scales_zeros).float()
        return y if self.bias is None else y + self.bias


# The dtype option's CPU kernels; other dtypes keep nn.Linear.
CPU_LINEARS: dict[str, type[nn.Module]] = {"bfloat16": PackedBF16Linear, "int8": Int8Linear, "int4": Int4Linear}


def prepare_for_cpu(model: GPTBigCode, kind: str) -> GPTBigCode:
    """Swap every Linear (and the tied lm_head) for the CPU kernel `kind` (a CPU_LINEARS key).

    For bfloat16 the model must already be in bf16; for int8 and int4 it stays fp32 everywhere
    else (embeddings, norms, attention, KV cache), so only the matmul weights are quantized.
    """
    make = CPU_LINEARS[kind]
    for block in model.h:
        for parent, name in ((block.attn, "c_attn"), (block.attn, "c_proj"), (block.mlp, "c_fc"), (block.mlp, "c_proj")):
            lin = getattr(parent, name)
            setattr(parent, name, make(lin.weight, lin.bias))
    model.lm_head = make(model.wte.weight, None)
    return model
