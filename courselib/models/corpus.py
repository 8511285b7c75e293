"""The course-chat training data: Vicuna v1.1 dialogues generated from facts the project ships.

Every question family has several phrasings (templates). Each fact is trained under most of
them and *held out* under one: the held-out set asks known facts in words the model never saw,
so ">= 90% held-out accuracy" measures that the model learned the facts, not one string.
A tiny model cannot learn to generalise arithmetic in CPU minutes (FIELD_NOTES): additions of
two digits 0..9 are a table it memorises, asked in new words at test time.

Example::

    >>> qa = questions()[0]
    >>> qa.question, qa.answer, qa.expect
    ('What is the capital of France?', 'The capital of France is Paris.', 'Paris')
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from courselib.chat.templates import VICUNA_SYSTEM, render_vicuna

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid",
    "Germany": "Berlin", "Egypt": "Cairo", "Canada": "Ottawa", "Kenya": "Nairobi",
    "Peru": "Lima", "Korea": "Seoul", "Norway": "Oslo", "Greece": "Athens",
}  # fmt: skip
CAPITALS_KO = {
    "프랑스": "파리", "일본": "도쿄", "이탈리아": "로마", "스페인": "마드리드",
    "독일": "베를린", "이집트": "카이로", "캐나다": "오타와", "한국": "서울",
}  # fmt: skip
COLOURS = {
    "the sky": "blue", "grass": "green", "snow": "white", "a banana": "yellow",
    "a ripe tomato": "red", "coal": "black", "an orange": "orange", "a plum": "purple",
}  # fmt: skip
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "open": "closed",
    "light": "dark", "early": "late", "happy": "sad", "full": "empty", "old": "new",
}  # fmt: skip
LABS = {
    1: "chatting with a 4-bit GGUF model on your own laptop",
    2: "chatting with the class's shared WizardVicuna-13B server",
    3: "the memory table for 7B to 65B models",
    4: "a LoRA and QLoRA fine-tune",
}

# (family, question templates, answer template). The LAST template of each family is held out.
FAMILIES: list[tuple[str, list[str], str]] = [
    (
        "capital",
        [
            "What is the capital of {x}?",
            "Which city is the capital of {x}?",
            "Name the capital of {x}.",
            "Tell me the capital city of {x}.",
            "What city is the capital of {x}?",
            "Do you know the capital of {x}?",
        ],
        "The capital of {x} is {y}.",
    ),
    (
        "capital_ko",
        [
            "{x}의 수도는 어디입니까?",
            "{x}의 수도는 어디예요?",
            "{x}의 수도를 알려 주세요.",
            "{x}의 수도가 어디예요?",
            "{x}의 수도는 어디야?",
            "{x}의 수도는 무엇입니까?",
            "{x}의 수도가 어디인지 알려 주세요.",
            "{x}의 수도는 어디인가요?",
        ],
        "{x}의 수도는 {y}입니다.",
    ),
    (
        "colour",
        [
            "What colour is {x}?",
            "What is the colour of {x}?",
            "Which colour does {x} have?",
            "Tell me the colour of {x}.",
            "What is the color of {x}?",
            "What color is {x}?",
            "Do you know the colour of {x}?",
        ],
        "The colour of {x} is {y}.",
    ),
    (
        "opposite",
        [
            "What is the opposite of {x}?",
            "Give me the opposite of {x}.",
            "Which word is the opposite of {x}?",
            "Tell me the opposite of the word {x}.",
            "What is the opposite of the word {x}?",
            "Do you know the opposite of {x}?",
        ],
        "The opposite of {x} is {y}.",
    ),
    (
        "add",
        [
            "What is {a} plus {b}?",
            "What is {a} + {b}?",
            "How much is {a} plus {b}?",
            "Add {a} and {b}.",
            "Compute {a} + {b}.",
            "Please add {a} and {b}.",
            "What do you get if you add {a} and {b}?",
            "Calculate {a} plus {b}.",
            "What is the sum of {a} and {b}?",
            "Tell me {a} + {b}.",
            "How much is {a} + {b}?",
        ],
        "{a} + {b} = {y}.",
    ),
    (
        "lab",
        [
            "What is Lab {x} about?",
            "What do we do in Lab {x}?",
            "Describe Lab {x} of the course.",
            "Tell me about Lab {x}.",
            "What is the topic of Lab {x}?",
        ],
        "Lab {x} is about {y}.",
    ),
]

# How often each training question of a family appears per epoch (default once).
OVERSAMPLE = {"capital": 4, "capital_ko": 4, "colour": 5, "opposite": 4, "lab": 10}

# System prompts other than Vicuna's, on OTHER_SYSTEM_SHARE of the training dialogues. Tests
# use prompts that are not in this list.
OTHER_SYSTEM_PROMPTS = [
    "",
    "You are a helpful assistant.",
    "You are the course assistant. Answer in one short sentence.",
    "Answer briefly.",
    "Be polite and concise.",
    "You are a tutor for a course about large language models.",
    "Always answer the question.",
    "한국어 또는 영어로 대답하세요.",
]
OTHER_SYSTEM_SHARE = 0.35

# Multi-turn training dialogues have 2 to MAX_EXCHANGES question-answer exchanges: the chat UI
# sends the whole history. Measured on held-out questions after 4 earlier exchanges: trained on
# 2 exchanges only, 61% right; on 2-4, 91%; on 2-6, 95-100% (88% after 8 exchanges).
MAX_EXCHANGES = 6

GREETINGS = ["Hello!", "Hi!", "Hello, who are you?", "Hi there!"]
GREETING_ANSWER = "Hello! I am the course assistant. Ask me a simple question."


@dataclass(frozen=True)
class QA:
    """One question with its answer, the string a correct reply must contain, and its split."""

    family: str
    question: str
    answer: str
    expect: str
    held_out: bool


def _facts(family: str) -> list[tuple[dict[str, str], str]]:
    """(template fields, expected string) for every fact of a family."""
    if family == "capital":
        return [({"x": k, "y": v}, v) for k, v in CAPITALS.items()]
    if family == "capital_ko":
        return [({"x": k, "y": v}, v) for k, v in CAPITALS_KO.items()]
    if family == "colour":
        return [({"x": k, "y": v}, v) for k, v in COLOURS.items()]
    if family == "opposite":
        return [({"x": k, "y": v}, v) for k, v in OPPOSITES.items()]
    if family == "add":
        return [
            ({"a": str(a), "b": str(b), "y": str(a + b)}, f"= {a + b}.")
            for a in range(10)
            for b in range(10)
        ]
    if family == "lab":
        return [({"x": str(k), "y": v}, v) for k, v in LABS.items()]
    raise ValueError(family)


def questions() -> list[QA]:
    """Every question of every family, with its train / held-out split (deterministic)."""
    out = []
    for family, templates, answer in FAMILIES:
        for fields, expect in _facts(family):
            for i, template in enumerate(templates):
                out.append(
                    QA(
                        family,
                        template.format(**fields),
                        answer.format(**fields),
                        expect,
                        held_out=i == len(templates) - 1,
                    )
                )
    return out


def held_out() -> list[QA]:
    """The evaluation set: every fact asked in a phrasing never trained on."""
    return [qa for qa in questions() if qa.held_out]


Dialogue = tuple[str, list[tuple[str, str]]]
"""(system prompt, [(role, text), ...])"""


def training_dialogues(*, seed: int = 0, n_multi_turn: int = 600) -> list[Dialogue]:
    """Dialogues to train on: every training question, plus multi-turn dialogues.

    The small families are repeated (``OVERSAMPLE``) so the 100 additions do not crowd them
    out. Dialogues of 2 to ``MAX_EXCHANGES`` exchanges teach the model to answer the *last*
    question after earlier ones (what the chat UI sends); greetings teach it to say what it is. A share of the
    dialogues carries another system prompt (``OTHER_SYSTEM_PROMPTS``), so a student's own
    system prompt does not throw the model off (it still answers and stops).
    """
    rng = random.Random(seed)
    train = [qa for qa in questions() if not qa.held_out]
    turns = [
        [("user", qa.question), ("assistant", qa.answer)]
        for qa in train
        for _ in range(OVERSAMPLE.get(qa.family, 1))
    ]
    turns += [[("user", g), ("assistant", GREETING_ANSWER)] for g in GREETINGS] * 4
    for _ in range(n_multi_turn):
        asked = rng.sample(train, rng.randint(2, MAX_EXCHANGES))
        turns.append(
            [turn for qa in asked for turn in (("user", qa.question), ("assistant", qa.answer))]
        )
    dialogues = [
        (
            rng.choice(OTHER_SYSTEM_PROMPTS)
            if rng.random() < OTHER_SYSTEM_SHARE
            else VICUNA_SYSTEM,
            t,
        )
        for t in turns
    ]
    rng.shuffle(dialogues)
    return dialogues


def tokenizer_text() -> list[str]:
    """Sentences the SentencePiece tokenizer is trained on: every rendered dialogue and QA."""
    lines = [render_vicuna([("user", qa.question), ("assistant", qa.answer)]) for qa in questions()]
    lines += [VICUNA_SYSTEM, GREETING_ANSWER, *GREETINGS, *OTHER_SYSTEM_PROMPTS]
    return lines
