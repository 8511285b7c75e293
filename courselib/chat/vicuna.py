"""Prompt templates: Vicuna v1.1 (FastChat ``vicuna_v1.1``, used by WizardVicuna-13B).

Used by Lab 01 (students re-implement :func:`render_vicuna` and are graded against it), by the
course-model builder (training dialogues and the chat template stored in every checkpoint and
GGUF) and by the local chat backends.

Rendered layout, byte for byte as FastChat's ``Conversation.get_prompt`` (sep " ", sep2 "</s>")::

    SYSTEM USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:

The tokenizer adds ``<s>`` (BOS) in front; the template itself never writes it.

Example::

    >>> render_vicuna([("user", "Hi")], system="Be brief.")
    'Be brief. USER: Hi ASSISTANT:'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Role = Literal["user", "assistant"]

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
VICUNA_ROLES = {"user": "USER", "assistant": "ASSISTANT"}
VICUNA_SEP = " "
VICUNA_SEP2 = "</s>"
VICUNA_STOP = ["</s>", "USER:"]

# The same format as a Jinja chat template, stored in the course models' tokenizer_config.json
# and GGUF metadata, so llama.cpp, transformers and OpenAI-compatible servers agree with
# render_vicuna. Unlike llama-cpp-python's built-in "vicuna" format it keeps a system message.
# It writes BOS itself, as LLaMA-2's templates do: servers (llama-cpp-python, vLLM) and
# transformers' apply_chat_template tokenize a rendered chat without adding special tokens.
VICUNA_JINJA = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = '" + VICUNA_SYSTEM.replace("'", "\\'") + "' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{{- system + ' ' -}}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}{{- 'USER: ' + message['content'] + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'ASSISTANT: ' + message['content'] + eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)


def render_vicuna(
    # str, not Role: the roles come from data (the corpus, training files, chat messages) and
    # are checked here, where any other role is a ValueError
    turns: Sequence[tuple[str, str]],
    *,
    system: str = VICUNA_SYSTEM,
    add_generation_prompt: bool = True,
) -> str:
    """Render (role, text) turns as a Vicuna v1.1 prompt.

    A trailing assistant prompt (``ASSISTANT:``) is added when the last turn is the user's and
    ``add_generation_prompt`` is true.

    Example::

        >>> render_vicuna([("user", "2+2?"), ("assistant", "4."), ("user", "3+3?")], system="S")
        'S USER: 2+2? ASSISTANT: 4.</s>USER: 3+3? ASSISTANT:'
    """
    out = [system + VICUNA_SEP]
    for role, text in turns:
        if role == "user":
            out.append(f"{VICUNA_ROLES['user']}: {text}{VICUNA_SEP}")
        elif role == "assistant":
            out.append(f"{VICUNA_ROLES['assistant']}: {text}{VICUNA_SEP2}")
        else:
            raise ValueError(f"unknown role {role!r}: use 'user' or 'assistant'")
    if add_generation_prompt and (not turns or turns[-1][0] == "user"):
        out.append(f"{VICUNA_ROLES['assistant']}:")
    return "".join(out)
