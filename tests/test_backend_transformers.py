"""transformers backend on the course-chat checkpoint: fp32, fp16, nf4; Stop; every error."""

from __future__ import annotations

import json

import pytest

from courselib.backends import open_backend
from courselib.backends.base import GenerationConfig, Message
from courselib.backends.transformers_hf import TransformersBackend
from courselib.chat.conversation import Conversation
from courselib.errors import CourseError
from courselib.models.gate import GREETING

GREEDY = GenerationConfig(temperature=0, max_tokens=48)
FRANCE = [Message("user", "What is the capital of Japan?")]


@pytest.fixture(scope="module")
def hf(course_hf):
    return course_hf("course-chat")


@pytest.fixture(scope="module")
def fp32(hf):
    with TransformersBackend(hf, threads=2) as backend:
        yield backend


def test_greedy_fp32_answers_and_matches_llama_cpp_f32(fp32, course_gguf):
    conv = Conversation()
    conv.add_user("What is 3 plus 4?")
    answer = fp32.complete(conv.messages(), config=GREEDY)
    assert "7" in answer and answer == answer.strip()
    with open_backend(str(course_gguf("course-chat", "F32"))) as gguf:
        # Same prompt string, same tokens (BOS included), same weights: the same greedy reply.
        assert gguf.count_tokens(conv.messages()) == fp32.count_tokens(conv.messages())
        assert gguf.complete(conv.messages(), config=GREEDY) == answer


def test_uses_the_checkpoint_chat_template(fp32):
    assert fp32.template.name == "model"
    assert fp32.context_size == 512
    ids = fp32.encode(fp32.template.render(FRANCE))
    assert ids[0] == fp32.tokenizer.bos_token_id != ids[1]


@pytest.mark.parametrize("dtype", ["fp16", "nf4"])
def test_fp16_and_nf4_answer_too(hf, dtype):
    with open_backend(str(hf), dtype=dtype, threads=2) as backend:
        assert backend.name.startswith(f"transformers course-chat/hf ({dtype}, ")
        reply = backend.complete(FRANCE, config=GREEDY)
        if dtype == "fp16":  # fp16 rounding is far below the promise's logit margin (gate)
            assert "Tokyo" in reply
        else:  # 4-bit noise can exceed any margin a tiny model has: a reply, not its words
            assert reply.strip() and len(backend.encode(reply)) < GREEDY.max_tokens


def test_closing_the_stream_stops_generate(fp32):
    # A promised greedy reply of over 20 tokens (every published build gives it: models.gate)
    messages = [Message("user", GREETING[0])]
    config = GenerationConfig(temperature=0, max_tokens=200)
    stream = fp32.stream(messages, config=config)
    pieces = [next(stream) for _ in range(3)]
    stream.close()  # joins the generate thread: it has ended when close returns
    assert len(pieces) == 3
    # One token per piece, plus the one being generated when the flag was set (+ byte tokens).
    assert fp32.generated_tokens <= 3 + 3


def test_prompt_longer_than_the_context(fp32):
    with pytest.raises(CourseError, match=r"The prompt is \d+ tokens, longer than the 512-token"):
        fp32.complete([Message("user", "hello " * 600)], config=GREEDY)


def test_missing_folder(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        TransformersBackend(tmp_path / "nope")


def test_folder_without_config_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CourseError, match="not a Hugging Face checkpoint"):
        open_backend(str(tmp_path))


def test_config_without_weights_is_incomplete(tmp_path, hf):
    (tmp_path / "config.json").write_text((hf / "config.json").read_text())
    with pytest.raises(CourseError, match="not a complete Hugging Face checkpoint"):
        TransformersBackend(tmp_path)


def test_a_65b_fp32_checkpoint_is_refused_before_loading(tmp_path):
    # LLaMA-65B's shape (docs/facts.md#memory): 65.3e9 params x 4 B = 261 GB in fp32, more than any
    # test machine has. The weights file is empty: the check must come before anything reads it.
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 8192,
        "intermediate_size": 22016,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 64,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "torch_dtype": "float32",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CourseError, match=r"needs about 26\d\.\d GB to load"):
        TransformersBackend(tmp_path, n_ctx=512)


def test_unknown_dtype(hf):
    with pytest.raises(CourseError, match="Unknown dtype 'int3'"):
        TransformersBackend(hf, dtype="int3")


@pytest.mark.gpu
def test_nf4_on_cuda_answers_and_checks_gpu_memory(hf):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: NF4 on CUDA is the path a 13B model takes on a server")
    with TransformersBackend(hf, dtype="nf4") as backend:
        assert backend.device == "cuda" and backend.name.endswith("(nf4, cuda)")
        assert "Tokyo" in backend.complete(FRANCE, config=GREEDY)


def test_extra_stop_strings_cut_the_reply(fp32):
    messages = FRANCE
    full = fp32.complete(messages, config=GREEDY)
    config = GenerationConfig(temperature=0, max_tokens=48, stop=["Tokyo"])
    assert fp32.complete(messages, config=config) == full[: full.index("Tokyo")]
