"""Chat templates: messages -> the prompt string a model was trained on (Lab 01, Lab 02).

Two kinds, one interface (:meth:`ChatTemplate.render` and :attr:`ChatTemplate.stop`):

- Vicuna v1.1, rendered by :func:`courselib.chat.vicuna.render_vicuna` (FastChat's layout);
  the fallback for old LLaMA fine-tunes that carry no template, such as WizardVicuna-13B.
- The model's own Jinja template (GGUF metadata ``tokenizer.chat_template`` or a Hugging Face
  tokenizer's ``chat_template``), rendered in a sandboxed Jinja environment the way
  transformers does, with ``bos_token``, ``eos_token`` and ``add_generation_prompt=True``.

The local backends render the prompt themselves and send the raw string to the engine, so a
custom system prompt always reaches the model (llama-cpp-python's built-in ``vicuna`` chat
format silently drops it).

Example::

    >>> from courselib.chat.messages import Message
    >>> t = vicuna_template()
    >>> t.render([Message("system", "Be brief."), Message("user", "Hi")])
    'Be brief. USER: Hi ASSISTANT:'
    >>> t.stop
    ['</s>', 'USER:']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Literal

from courselib.chat.messages import Message
from courselib.chat.vicuna import VICUNA_STOP, VICUNA_SYSTEM, render_vicuna
from courselib.errors import CourseError

TemplateChoice = Literal["auto", "model", "vicuna"]
"""'auto': the model's own template if it has one, else Vicuna v1.1."""


@dataclass(frozen=True)
class ChatTemplate:
    """A named way to turn messages into a prompt, and the strings that end a reply."""

    name: str
    """'vicuna_v1.1' or 'model' (the checkpoint's own Jinja template)."""
    renderer: Callable[[Sequence[Message]], str] = field(repr=False)
    stop: list[str] = field(default_factory=list)
    """Stop strings: the end-of-turn text and the next user prefix, e.g. ['</s>', 'USER:']."""

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt for ``messages`` ending with the assistant's generation prompt."""
        return self.renderer(messages)


def _render_vicuna_messages(messages: Sequence[Message]) -> str:
    system = VICUNA_SYSTEM
    if messages and messages[0].role == "system":
        system, messages = messages[0].content, messages[1:]
    return render_vicuna([(m.role, m.content) for m in messages], system=system)


def vicuna_template() -> ChatTemplate:
    """Vicuna v1.1 as FastChat renders it: ``SYS USER: q ASSISTANT: a</s>USER: q2 ASSISTANT:``."""
    return ChatTemplate("vicuna_v1.1", _render_vicuna_messages, list(VICUNA_STOP))


@lru_cache(maxsize=8)
def _compile(source: str):
    from jinja2.exceptions import TemplateError
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class IgnoreGenerationTags(Extension):
        # Hub templates mark assistant text with {% generation %}: render the body as is.
        tags = {"generation"}

        def parse(self, parser):
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    # The same environment transformers' apply_chat_template builds: sandboxed, blocks trimmed,
    # a tojson that keeps non-ASCII text, and the helper globals Hub templates call.
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[IgnoreGenerationTags, loopcontrols]
    )
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise CourseError(
            f"The model's chat template is not valid Jinja ({exc}).",
            hint="Pass template='vicuna' to use the Vicuna v1.1 format instead.",
        ) from None


def jinja_template(source: str, *, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
    """A template from Jinja source, e.g. a GGUF's ``tokenizer.chat_template``.

    Stop strings are ``eos_token`` plus the user prefix found by rendering a probe conversation
    (for the Vicuna template: 'USER:'; for ChatML: '<|im_start|>user'), so a model that forgets
    to end its turn does not write the user's next line.
    """
    from jinja2.exceptions import TemplateError

    compiled = _compile(source)

    def render(messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        try:
            return compiled.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                bos_token=bos_token,
                eos_token=eos_token,
                add_generation_prompt=add_generation_prompt,
            )
        except TemplateError as exc:
            raise CourseError(
                f"The model's chat template refused these messages: {exc}",
                hint="Check the roles (system first, then user and assistant in turn) or pass "
                "template='vicuna'.",
            ) from None

    stop = [eos_token] if eos_token else []
    user_prefix = _user_prefix(render, eos_token)
    if user_prefix:
        stop.append(user_prefix)
    return ChatTemplate("model", render, stop)


def _user_prefix(render: Callable[..., str], eos_token: str) -> str:
    """The text a template writes in front of a user message after an assistant reply."""
    a, q = "\x01ANSWER\x01", "\x01QUESTION\x01"
    probe = [Message("user", "hi"), Message("assistant", a), Message("user", q)]
    try:
        text = render(probe, add_generation_prompt=False)
    except CourseError:
        return ""
    start, end = text.find(a), text.find(q)
    if start < 0 or end < start:
        return ""
    between = text[start + len(a) : end]
    if eos_token:
        between = between.replace(eos_token, "")
    return between.strip()


def resolve_template(
    template: ChatTemplate | TemplateChoice | None,
    *,
    model_template: str | None,
    bos_token: str = "",
    eos_token: str = "",
) -> ChatTemplate:
    """The template to use: an explicit one, 'vicuna', or ('auto'/None) the model's own if any.

    Example: ``resolve_template(None, model_template=None)`` -> Vicuna v1.1.
    """
    if isinstance(template, ChatTemplate):
        return template
    if template == "vicuna":
        return vicuna_template()
    if template in (None, "auto"):
        if model_template:
            return jinja_template(model_template, bos_token=bos_token, eos_token=eos_token)
        return vicuna_template()
    if template == "model":
        if not model_template:
            raise CourseError(
                "This model carries no chat template.",
                hint="Use template='vicuna' (or 'auto', which falls back to Vicuna v1.1).",
            )
        return jinja_template(model_template, bos_token=bos_token, eos_token=eos_token)
    raise CourseError(
        f"Unknown chat template {template!r}.",
        hint="Use 'auto' (the model's own, else Vicuna), 'model' or 'vicuna'.",
    )
