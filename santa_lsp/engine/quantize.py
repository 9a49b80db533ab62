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
_ROWS = 1024  # rows quantized at a time (a multiple of 4)


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
    fp32's bytes per token. Lossy; opt-in through dtype `int8`.

    With `native=True` (the lm_head of an int4 model) and where kernels.native_int8() holds, the
    weights stay as they are and kernels.int8_mm multiplies them: nothing to prepack (fbgemm's
    prepacking of SantaCoder's lm_head took 1.5 s of each start-up) and a faster step at batch 1
    (5 against 7 ms for the 49,280 x 2,048 lm_head on 2 cores); fbgemm stays for whole-int8 models,
    whose prefill it runs faster."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, native: bool = False) -> None:
        w = weight.detach().float().contiguous()
        # max |w| per row without an |w| copy (the tied lm_head of the 1.1B is 400 MB in fp32)
        scale = (torch.linalg.vector_norm(w, float("inf"), dim=1).clamp(min=1e-8) / 127.0).double()
        q = torch.empty(w.shape, dtype=torch.int8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch flags the quantized-tensor API as legacy
            for i in range(0, w.shape[0], _ROWS):  # rows are independent: the first load's peak stays low
                part = torch.quantize_per_channel(w[i:i + _ROWS], scale[i:i + _ROWS],
                                                  torch.zeros(len(scale[i:i + _ROWS]), dtype=torch.long), 0, torch.qint8)
                q[i:i + _ROWS] = part.int_repr()
        self._init(q, scale, bias, native)

    @classmethod
    def from_int8(cls, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                  native: bool = False) -> Int8Linear:
        """Rebuild from `int8()`'s tensors (engine/qcache.py): no quantizing."""
        self = cls.__new__(cls)
        self._init(qweight, scale, bias, native)
        return self

    def _init(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, native: bool) -> None:
        nn.Module.__init__(self)
        self.out_features, self.in_features = q.shape
        self.native = native and kernels.native_int8() and self.in_features % 64 == 0 and self.out_features % 4 == 0
        b = None if bias is None else bias.detach().float().contiguous()
        if self.native:
            for name, t in (("qweight", q.contiguous()), ("scale", scale.float().contiguous()),
                            ("rowsum", kernels.int8_rowsum(q)), ("bias", b)):
                self.register_buffer(name, t, persistent=False)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch flags the quantized-tensor API as legacy
            zero = torch.zeros(q.shape[0], dtype=torch.long)
            qt = torch._make_per_channel_quantized_tensor(q, scale.double(), zero, 0)
            self._packed = torch.ops.quantized.linear_prepack(qt, b)

    def int8(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(int8 weight [N, K], per-row scale, bias)."""
        if self.native:
            return self.qweight, self.scale, self.bias
        qweight, bias = torch.ops.quantized.linear_unpack(self._packed)
        return qweight.int_repr(), qweight.q_per_channel_scales().float(), bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            return kernels.int8_mm(x, self.qweight, self.scale, self.rowsum, self.bias)
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed, False)


class Int4Linear(nn.Module):
    """4-bit weights, asymmetric, one (scale, min) per group of 64 inputs: an eighth of fp32's
    bytes. Where the native kernel builds (engine/kernels.py: x86 and a C compiler), activations
    are quantized to int8 per group and the products run on integer dot products, near the
    bandwidth floor at batch 1; elsewhere torch's int4 kernel with bf16 activations (its fp32 path
    is 30x slower) on the same 4-bit values. Lossy; opt-in, dtype `int4`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        n, k = weight.shape
        self.out_features, self.in_features = n, k
        self.native = kernels.native_fits(n, k) and kernels.native_enabled()
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous(), persistent=False)
        if self.native:
            # In slices of rows (the packing keeps rows in fours): the quantizing temporaries of
            # an 8192 x 2048 layer (~150 MB) would otherwise add to the first load's peak memory.
            packed, scales, mins = [], [], []
            for i in range(0, n, _ROWS):
                q, s, m = kernels.quantize_int4(weight[i:i + _ROWS])
                packed.append(kernels.pack_native(q))
                scales.append(s)
                mins.append(m)
                del q
            self.register_buffer("packed", torch.cat(packed), persistent=False)
            self.register_buffer("scale", torch.cat(scales).contiguous(), persistent=False)
            self.register_buffer("mins", torch.cat(mins).contiguous(), persistent=False)
            return
        q, scale, mins = kernels.quantize_int4(weight)
        # torch's kernel computes w = (q - 8) * scale + zero, so zero = min + 8 * scale.
        s, m = scale.float(), mins.float()
        scales_zeros = torch.stack([s.t(), (m + 8 * s).t()], -1)  # [k/G, n, 2]
        self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu(q, 1), persistent=False)
        self.register_buffer("scales_zeros", scales_zeros.to(torch.bfloat16).contiguous(), persistent=False)

    @classmethod
    def from_native(cls, packed: torch.Tensor, scale: torch.Tensor, mins: torch.Tensor,
                    bias: torch.Tensor | None) -> Int4Linear:
        """Rebuild a native-kernel layer from its buffers (engine/qcache.py): no quantizing."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.out_features, self.in_features = packed.shape[0], packed.shape[1] * 2
        self.native = True
        for name, t in (("bias", bias), ("packed", packed), ("scale", scale), ("mins", mins)):
            self.register_buffer(name, t, persistent=False)
        return self

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
    With int4 the lm_head stays int8: it decides the top-1 token directly, and in 4 bits it cost
    6 points of top-1 agreement with fp32 on the bundled model (90.0% -> 96.3% with int8 there),
    for 9% more weight bytes per token on the 1.1B (llama.cpp's Q4_0 keeps its output in Q6_K).
    """
    make = CPU_LINEARS[kind]
    for block in model.h:
        for parent, name in ((block.attn, "c_attn"), (block.attn, "c_proj"), (block.mlp, "c_fc"), (block.mlp, "c_proj")):
            lin = getattr(parent, name)
            setattr(parent, name, make(lin.weight, lin.bias))
    model.lm_head = Int8Linear(model.wte.weight, None, native=True) if kind == "int4" else make(model.wte.weight, None)
    if kind == "int4":
        from santa_lsp.engine import fused  # fused imports this module

        fused.attach(model)
    return model
