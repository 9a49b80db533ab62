"""The inference engine, split the gpt-fast way: one job per module.

    model.py      the model only: config, KV cache, attention, block, forward (GPT-2 + MQA)
    quantize.py   CPU kernels for its matmuls (prepacked bf16, int8, int4) and prepare_for_cpu
    load.py       model name + options -> device/dtype, weights, tokenizer, kernels -> Engine
    generate.py   prefill and decode with KV-cache slots reused by common prefix (Engine)
    graphs.py     the static-shape decode step and its CUDA-graph capture
    weights.py    checkpoints in both formats (transformers gpt_bigcode, original santacoder)
    hub.py        model names -> local directories (bundled, Hugging Face cache, download)
    tokenizer.py  the BPE tokenizer and its FIM tokens
    remote.py     the same Engine interface over an OpenAI-compatible server (vLLM, TGI...)

The rest of the package imports the names below from here.
"""

from santa_lsp.engine.generate import Engine, GenerationParams, GenerationResult, StopReason
from santa_lsp.engine.load import LoadedModel, load_engine, pick_device_dtype, prepare_model

__all__ = ["Engine", "GenerationParams", "GenerationResult", "LoadedModel", "load_engine", "pick_device_dtype",
           "prepare_model", "StopReason"]
