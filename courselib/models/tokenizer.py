"""Train the course's SentencePiece tokenizer and save it as a LLaMA tokenizer.

The options are LLaMA's own (byte fallback, digits split, dummy prefix, no normalisation), so
the course models tokenize like a real LLaMA-1/2 checkpoint and the GGUF converter takes the
same path for both: any character outside the vocabulary (emoji, rare Korean) becomes bytes.

The Hugging Face side (tokenizer.json) uses the "legacy" SentencePiece normalisation: prepend
"▁" to every text segment and turn spaces into "▁". transformers 5's LlamaTokenizer instead
uses a Metaspace pre-tokenizer that does not add the dummy prefix before leading spaces
(" leading" -> one "▁" fewer than sentencepiece and llama.cpp) nor after special tokens.
With the legacy normalizer HF, sentencepiece and llama.cpp give identical ids (tested).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from courselib.chat.vicuna import VICUNA_JINJA
from courselib.errors import require

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def train_sentencepiece(lines: list[str], *, vocab_size: int) -> bytes:
    """A serialized SentencePiece BPE model trained on ``lines`` (deterministic)."""
    spm = require("sentencepiece", extra="models")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,  # more threads make BPE merges order-dependent
        minloglevel=2,
    )
    return model.getvalue()


def save_llama_tokenizer(sp_model: bytes, out_dir: Path, *, context_length: int) -> None:
    """Write tokenizer.model + tokenizer_config.json (+ tokenizer.json via transformers)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(sp_model)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": True,
        "model_max_length": context_length,
        "chat_template": VICUNA_JINJA,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": UNK}, indent=2)
    )
    # transformers converts the SentencePiece model to tokenizer.json once; later loads read it.
    transformers = require("transformers", extra="models")
    tok = transformers.LlamaTokenizer.from_pretrained(str(out_dir), legacy=True)
    tok.save_pretrained(str(out_dir))
    path = out_dir / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ],
    }
    spec["pre_tokenizer"] = None
    path.write_text(json.dumps(spec, ensure_ascii=False, indent=1), encoding="utf-8")
    # save_pretrained rewrote the config: restore ours (generic fast tokenizer, legacy spaces)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
