"""Chat templates: Vicuna v1.1 byte for byte as FastChat, and Jinja templates as transformers."""

from __future__ import annotations

import pytest

from courselib.backends.base import Message
from courselib.chat.template import jinja_template, resolve_template, vicuna_template
from courselib.chat.vicuna import VICUNA_JINJA, VICUNA_SYSTEM
from courselib.errors import CourseError

# FastChat vicuna_v1.1 (SeparatorStyle.ADD_COLON_TWO, sep " ", sep2 "</s>"), written out by hand:
# system + sep, then "ROLE: message" + sep / sep2 alternately, then "ASSISTANT:".
FASTCHAT_TWO_TURNS = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions. "
    "USER: What is 3 plus 4? ASSISTANT: 7.</s>"
    "USER: And 2 plus 2? ASSISTANT:"
)
CONVERSATION = [
    Message("user", "What is 3 plus 4?"),
    Message("assistant", "7."),
    Message("user", "And 2 plus 2?"),
]


def test_vicuna_matches_fastchat_multi_turn():
    assert vicuna_template().render(CONVERSATION) == FASTCHAT_TWO_TURNS
    with_system = [Message("system", VICUNA_SYSTEM), *CONVERSATION]
    assert vicuna_template().render(with_system) == FASTCHAT_TWO_TURNS


def test_vicuna_custom_system_prompt_reaches_the_prompt():
    prompt = vicuna_template().render([Message("system", "Answer in Korean."), CONVERSATION[0]])
    assert prompt == "Answer in Korean. USER: What is 3 plus 4? ASSISTANT:"


def test_vicuna_jinja_renders_the_same_string_with_its_stops():
    template = jinja_template(VICUNA_JINJA, bos_token="<s>", eos_token="</s>")
    # the Jinja form writes BOS itself (servers tokenize it without adding special tokens)
    assert template.render(CONVERSATION) == "<s>" + FASTCHAT_TWO_TURNS
    custom = [Message("system", "Be brief."), *CONVERSATION]
    assert template.render(custom) == "<s>" + vicuna_template().render(custom)
    assert template.stop == ["</s>", "USER:"] == vicuna_template().stop


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_another_jinja_template_gets_its_own_stops():
    template = jinja_template(CHATML, eos_token="<|im_end|>")
    assert template.render([Message("system", "S"), Message("user", "Q")]) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )
    assert template.stop == ["<|im_end|>", "<|im_start|>user"]


def test_jinja_templates_run_sandboxed_with_transformers_helpers():
    strict = jinja_template(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
        "{{ bos_token }}{{ messages | tojson }}",
        bos_token="<s>",
    )
    assert strict.render([Message("user", "안녕")]) == '<s>[{"role": "user", "content": "안녕"}]'
    with pytest.raises(CourseError, match="user first"):
        strict.render([Message("system", "S")])
    with pytest.raises(CourseError, match="unsafe"):
        jinja_template("{{ messages.__class__.__mro__ }}").render([Message("user", "x")])


def test_resolve_template_prefers_the_model_template_and_falls_back_to_vicuna():
    assert resolve_template(None, model_template=None).name == "vicuna_v1.1"
    assert resolve_template("auto", model_template=CHATML).name == "model"
    assert resolve_template("vicuna", model_template=CHATML).name == "vicuna_v1.1"
    with pytest.raises(CourseError, match="no chat template"):
        resolve_template("model", model_template=None)
    with pytest.raises(CourseError, match="Unknown chat template"):
        resolve_template("llama-2", model_template=None)


def test_generation_tags_of_hub_templates_render_their_body():
    template = jinja_template(
        "{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}"
        "{{ m['content'] }}{% endgeneration %}{% else %}{{ m['content'] }}|{% endif %}"
        "{% endfor %}"
    )
    assert template.render([Message("user", "Q"), Message("assistant", "A")]) == "Q|A"
