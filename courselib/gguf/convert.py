"""Convert a LLaMA-architecture Hugging Face checkpoint to GGUF (F32 or F16) with the `gguf` package.

This is the converter students run on a real 7B/13B checkpoint directory (Lab 01), and the one
that builds the course models: same code path. It streams one tensor at a time (a 7B model
never sits in memory twice), writes under a temporary name and renames when complete.

What it does, as llama.cpp's own convert_hf_to_gguf.py does for LLaMA:
- metadata: shapes, RMSNorm eps, RoPE base (and linear RoPE scaling), file type;
- vocabulary: the SentencePiece model (tokens, scores, types), special token ids, the chat
  template from tokenizer_config.json / chat_template.jinja;
- tensors: HF names mapped to GGUF names; Q and K projections permuted from HF's rotary layout
  (rotate-half) to llama.cpp's (interleaved pairs), or logits disagree.

Example::

    convert_hf_to_gguf(Path("llama-7b-hf"), Path("llama-7b-F16.gguf"), out_type="F16")
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from courselib.atomic import atomic_path
from courselib.errors import CourseError, require
from courselib.legacy import legacy_notes, modern_llama_config

SUPPORTED = "LLaMA-architecture checkpoints (model_type 'llama': LLaMA 1/2, Vicuna, WizardVicuna, Alpaca, ...)"
# Tensors transformers keeps in some checkpoints that llama.cpp recomputes.
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)


def read_hf_config(model_dir: Path, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """config.json of a checkpoint, checked to be a LLaMA model; an early conversion's old
    class names (``LLaMAForCausalLM``, ``LLaMATokenizer``) are read as today's, with one
    ``log`` line each (courselib.legacy)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CourseError(
            f"Checkpoint directory {model_dir} does not exist.",
            hint="Pass the folder that holds config.json and the weights (e.g. 'llama-7b-hf/').",
        )
    path = model_dir / "config.json"
    if not path.is_file():
        raise CourseError(
            f"{model_dir} is not a Hugging Face checkpoint: it has no config.json.",
            hint="Pass the folder that holds config.json, tokenizer.model and the weights.",
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CourseError(
            f"{path} is not valid JSON ({exc}).", hint="The checkpoint is corrupt; copy it again."
        ) from None
    tokenizer_file = model_dir / "tokenizer_config.json"
    try:
        tokenizer_config = (
            json.loads(tokenizer_file.read_text()) if tokenizer_file.is_file() else {}
        )
    except (json.JSONDecodeError, UnicodeDecodeError):
        tokenizer_config = {}  # the converter reads tokenizer.model; SpecialVocab reports this
    for note in legacy_notes(config, tokenizer_config):
        log(note)
    config = modern_llama_config(config)
    arch = config.get("model_type")
    if arch != "llama":
        archs = ", ".join(config.get("architectures") or []) or "unknown"
        raise CourseError(
            f"{model_dir} holds a '{arch}' model ({archs}); the course converter supports {SUPPORTED}.",
            hint="For other architectures use llama.cpp's convert_hf_to_gguf.py, or pick a LLaMA model.",
        )
    if (
        config.get("rope_scaling")
        and (config["rope_scaling"].get("rope_type") or config["rope_scaling"].get("type"))
        != "linear"
    ):
        raise CourseError(
            f"{model_dir} uses RoPE scaling {config['rope_scaling']}, which the course converter does not write.",
            hint="Use llama.cpp's convert_hf_to_gguf.py for Llama-3-style checkpoints.",
        )
    return config


def rope_theta(config: dict[str, Any]) -> float:
    """RoPE base frequency (transformers 5 keeps it under rope_parameters)."""
    params = config.get("rope_parameters") or {}
    return float(params.get("rope_theta", config.get("rope_theta", 10000.0)))


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half layout -> llama.cpp interleaved layout, per head. (out, in) -> (out, in).

    Within each head, HF keeps the two rotary halves as [x0..x(d/2-1), y0..y(d/2-1)];
    llama.cpp expects pairs [x0, y0, x1, y1, ...]. Same as convert_hf_to_gguf.py's permute.
    """
    out_dim = weights.shape[0]
    return (
        weights.reshape(n_head, 2, out_dim // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


class TensorSource:
    """Random access to a checkpoint's tensors, one at a time, from safetensors or .bin shards.

    safetensors shards are memory-mapped and read by name; .bin shards are loaded with
    ``mmap=True`` so a 7B checkpoint is paged in, not copied.
    """

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._files = sorted(model_dir.glob("*.safetensors"))
        self._where: dict[str, Any] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        if self._files:
            for file in self._files:
                for name, shape in _safetensors_header(file):
                    self._where[name] = file
                    self.shapes[name] = shape
            return
        bins = sorted(model_dir.glob("pytorch_model*.bin"))
        if not bins:
            raise CourseError(
                f"{model_dir} has no weights (*.safetensors or pytorch_model*.bin).",
                hint="Copy the whole checkpoint folder, weights included.",
            )
        torch = require("torch", extra="models")
        for file in bins:
            try:
                state = torch.load(str(file), map_location="cpu", mmap=True, weights_only=True)
            except Exception as exc:  # torch raises many types for a bad pickle/zip
                raise CourseError(
                    f"Weights file {file} is corrupt ({exc}).", hint="Copy the checkpoint again."
                ) from None
            for name, tensor in state.items():
                self._where[name] = tensor
                self.shapes[name] = tuple(tensor.shape)

    def get(self, name: str) -> np.ndarray:
        """The tensor as a float32 array (bf16/fp16 checkpoints are widened)."""
        where = self._where[name]
        if not isinstance(where, Path):
            return where.float().numpy()
        safetensors = require("safetensors", extra="models")
        require("torch", extra="models")
        try:
            with safetensors.safe_open(str(where), framework="pt") as fh:
                return fh.get_tensor(name).float().numpy()
        except (RuntimeError, ValueError, safetensors.SafetensorError) as exc:
            raise CourseError(
                f"Weights file {where} is corrupt or truncated ({exc}).",
                hint="Copy or download the checkpoint again (or rebuild a course model).",
            ) from None


def _vocab(model_dir: Path, n_vocab: int):
    """(tokens, scores, types, normalizer spec) from tokenizer.model, padded to n_vocab."""
    gguf = require("gguf", extra="models")
    if not (model_dir / "tokenizer.model").is_file():
        raise CourseError(
            f"{model_dir} has no tokenizer.model (SentencePiece); the course converter handles "
            "SentencePiece vocabularies (LLaMA 1/2 family).",
            hint="For BPE tokenizers (Llama-3) use llama.cpp's convert_hf_to_gguf.py.",
        )
    vocab = gguf.vocab.SentencePieceVocab(model_dir)
    tokens, scores, types = [], [], []
    for text, score, toktype in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(toktype)
    if len(tokens) > n_vocab:
        raise CourseError(
            f"The tokenizer has {len(tokens)} tokens but config.json says vocab_size={n_vocab}.",
            hint="The checkpoint's tokenizer and weights do not belong together.",
        )
    for i in range(len(tokens), n_vocab):  # fine-tunes often pad the embedding matrix
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    from sentencepiece import sentencepiece_model_pb2

    # generated protobuf code: ModelProto is built at import time, so no stub declares it
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]
    proto.ParseFromString((model_dir / "tokenizer.model").read_bytes())
    return tokens, scores, types, proto.normalizer_spec


def convert_hf_to_gguf(
    model_dir: Path,
    out_path: Path,
    *,
    out_type: Literal["F32", "F16"] = "F16",
    name: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Convert a LLaMA HF checkpoint directory to a GGUF file; returns ``out_path``.

    ``log`` gets one line per old class name an early LLaMA conversion uses.
    """
    gguf = require("gguf", extra="models")
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = read_hf_config(model_dir, log=log)
    n_layer = config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads") or n_head
    n_embd = config["hidden_size"]
    head_dim = config.get("head_dim") or n_embd // n_head
    n_vocab = config["vocab_size"]
    tokens, scores, types, normalizer = _vocab(model_dir, n_vocab)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)

    source = TensorSource(model_dir)
    # The header (names, shapes, types) is written before any data: plan it from shapes alone.
    plan = []
    for hf_name, shape in source.shapes.items():
        if hf_name.endswith(SKIPPED_SUFFIXES):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise CourseError(
                f"{model_dir} has a tensor '{hf_name}' that a LLaMA model does not have.",
                hint=f"The course converter supports {SUPPORTED}.",
            )
        f16 = out_type == "F16" and len(shape) == 2
        plan.append((hf_name, gguf_name, shape, np.float16 if f16 else np.float32))
    _check_complete(
        {g for _, g, _, _ in plan}, n_layer, tied=bool(config.get("tie_word_embeddings"))
    )
    file_type = gguf.LlamaFileType.MOSTLY_F16 if out_type == "F16" else gguf.LlamaFileType.ALL_F32

    with atomic_path(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name(name or model_dir.name)
        writer.add_context_length(config.get("max_position_embeddings", 2048))
        writer.add_embedding_length(n_embd)
        writer.add_block_count(n_layer)
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head_kv)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(rope_theta(config))
        if config.get("rope_scaling"):
            writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(config["rope_scaling"]["factor"]))
        writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
        writer.add_vocab_size(n_vocab)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_add_space_prefix(normalizer.add_dummy_prefix)
        writer.add_remove_extra_whitespaces(normalizer.remove_extra_whitespaces)
        # gguf warns about tokenizer.json's pair template, which llama.cpp does not use
        logging.getLogger("gguf.vocab").setLevel(logging.ERROR)
        special = gguf.SpecialVocab(model_dir, load_merges=False, n_vocab=n_vocab)
        special.add_to_gguf(writer, quiet=True)
        for _, gguf_name, shape, dtype in plan:
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            writer.add_tensor_info(gguf_name, shape, np.dtype(dtype), nbytes)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for hf_name, _, _, dtype in tqdm(
            plan, desc=f"convert -> {out_path.name}", unit="tensor", disable=not progress
        ):
            array = source.get(hf_name)
            if hf_name.endswith("q_proj.weight"):
                array = permute_qk(array, n_head)
            elif hf_name.endswith("k_proj.weight"):
                array = permute_qk(array, n_head_kv)
            writer.write_tensor_data(np.ascontiguousarray(array.astype(dtype)))
        writer.close()
    return out_path


def _safetensors_header(file: Path) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes from a safetensors header, in file order, without the data."""
    try:
        with open(file, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError(f"header size {size}")
            header = json.loads(fh.read(size))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CourseError(
            f"Weights file {file} is corrupt or not a safetensors file ({exc}).",
            hint="Copy or download the checkpoint again (or rebuild a course model).",
        ) from None
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    data_end = max((v["data_offsets"][1] for _, v in entries), default=0)
    if file.stat().st_size < 8 + size + data_end:  # a copy or download that stopped early
        raise CourseError(
            f"Weights file {file} is truncated: {file.stat().st_size:,} bytes, its header "
            f"describes {8 + size + data_end:,}.",
            hint="Copy or download the checkpoint again (or rebuild a course model).",
        )
    for name, info in sorted(entries, key=lambda kv: kv[1]["data_offsets"][0]):
        yield name, tuple(info["shape"])


def _check_complete(names: set[str], n_layer: int, *, tied: bool) -> None:
    per_block = [
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ]
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{t}.weight" for i in range(n_layer) for t in per_block
    }
    if not tied:
        expected.add("output.weight")
    missing = sorted(expected - names)
    if missing:
        raise CourseError(
            f"The checkpoint is missing {len(missing)} tensors (e.g. {', '.join(missing[:3])}).",
            hint="A weights shard is probably missing or truncated; copy the checkpoint again.",
        )
