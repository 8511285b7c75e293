"""Tiny LLaMA checkpoints and GGUF files for the memory tests (built in tmp, never downloaded).

``TINY`` is a 2-layer LLaMA with grouped-query attention (4 query heads, 2 KV heads) whose
rows are multiples of 256, so K-quant rules apply to it as to a real model.
"""

from __future__ import annotations

from pathlib import Path

TINY = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 320,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}


TRAINING = {
    "hidden_size": 768,
    "num_hidden_layers": 8,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "intermediate_size": 2304,
    "vocab_size": 2048,
}
"""58M parameters with grouped-query attention, for the training-memory tests. A process's
fixed costs (autograd's engine, thread pools, kernel workspaces, malloc arenas) are 20-25 MiB
and vary by about as much between runs and CPUs: on a 19M model (LoRA peak ~160 MiB) that
alone moved the measurement 12% off its estimate; here LoRA's peak is ~360 MiB and full
fine-tuning's ~930 MiB, so the same variation is under 6% and 2.5%."""


def save_tiny_llama(out_dir: Path, **overrides) -> Path:
    """Save a random LLaMA (``TINY`` + overrides) as a transformers checkpoint in ``out_dir``."""
    import torch
    import transformers

    torch.manual_seed(0)
    keys = {
        k: v for k, v in {**TINY, **overrides}.items() if k not in ("model_type", "torch_dtype")
    }
    config = transformers.LlamaConfig(**keys, rms_norm_eps=1e-5)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    return out_dir


def write_tiny_gguf(path: Path, *, file_type: str = "F16", config: dict | None = None) -> Path:
    """Write a LLaMA-layout GGUF with random weights, each tensor at the type llama.cpp's
    quantizer would pick for ``file_type``: "F32", "F16" or "Q8_0" (gguf-py cannot write the
    Q6_K head of the other types).
    """
    import gguf
    import numpy as np

    from courselib.gguf.mix import llama_tensors, tensor_types
    from courselib.memory.configs import shape_of

    shape = shape_of(config or TINY)
    types = tensor_types(shape, file_type)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(shape.max_ctx)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{file_type}", 0))
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"tok{i}".encode() for i in range(shape.vocab)])
    writer.add_token_scores([0.0] * shape.vocab)
    writer.add_token_types([1] * shape.vocab)
    rng = np.random.default_rng(0)
    for t in llama_tensors(shape):
        data = (
            rng.standard_normal((t.ny, t.nx), dtype=np.float32)
            if t.ny > 1
            else np.ones(t.nx, np.float32)
        )
        qtype = gguf.GGMLQuantizationType[types[t.name]]
        if qtype != gguf.GGMLQuantizationType.F32:
            packed = gguf.quants.quantize(data, qtype)
            writer.add_tensor(t.name, packed, raw_shape=packed.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
