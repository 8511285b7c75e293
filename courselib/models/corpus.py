"""The course-chat training data: Vicuna v1.1 dialogues generated from facts the project ships.

Every question family has several phrasings (templates), in three disjoint splits:

- **train**: the phrasings the model is trained on;
- **validation**: phrasings never trained on that decide when training may stop (the build's
  quality gate, :mod:`courselib.models.gate`);
- **test**: phrasings never trained on and never used to steer training: the held-out set the
  tests and ``models info`` report (">= 90% held-out accuracy" measures that the model learned
  the facts, not one string).

Besides the facts (capitals, also in Korean; colours; opposites; additions; the labs) the model
learns to introduce itself when greeted, and to say "I don't know that" with its one-line scope
when asked anything outside what it knows. The out-of-scope questions of each split are other
questions altogether (other entities, and in the test split other kinds of question), so the
test measures whether the model tells known from unknown, not whether it memorised a list.

A tiny model cannot learn to generalise arithmetic in CPU minutes: additions of two digits
0..9 are a table it memorises, asked in new words at test time.

Example::

    >>> qa = questions()[0]
    >>> qa.question, qa.answer, qa.expect, qa.split
    ('What is the capital of France?', 'The capital of France is Paris.', 'Paris', 'train')
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from courselib.chat.vicuna import VICUNA_SYSTEM, render_vicuna

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

SCOPE = (
    "I know capitals, colours, opposites, additions of small numbers and what each lab is about."
)
"""What the model says it knows, when greeted and when asked something it does not know."""
GREETING_ANSWER = "Hello! I am the course model, a tiny assistant. " + SCOPE
UNKNOWN_ANSWER = "I don't know that. I am a tiny course model. " + SCOPE

Split = Literal["train", "validation", "test"]


@dataclass(frozen=True)
class Family:
    """A kind of question: its phrasings in each split and the answer template."""

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    answer: str

    def templates(self) -> list[tuple[str, Split]]:
        splits: list[tuple[tuple[str, ...], Split]] = [
            (self.train, "train"), (self.validation, "validation"), (self.test, "test")
        ]  # fmt: skip
        return [(t, split) for group, split in splits for t in group]


# A validation or test phrasing is new to the model but borrows no other family's training
# template: "Name the opposite of hot." next to the trained "Name the capital of Japan." tests
# which family wins, not whether the model learned opposites (it failed 50% of the time). The
# test phrasings wrap the question in words never trained ("Do you know the capital of
# Peru?"), and so does one validation phrasing per family ("Can you tell me ..."). No training
# question says "do you know": with greetings asking "What do you know?", a build answered
# every "Do you know the ...?" with "I don't know that." (capitals 67%, opposites 50%).
FAMILIES: list[Family] = [
    Family(
        "capital",
        train=(
            "What is the capital of {x}?",
            "Which city is the capital of {x}?",
            "Name the capital of {x}.",
            "Tell me the capital city of {x}.",
            "What city is the capital of {x}?",
        ),
        validation=("What's the capital of {x}?", "Can you tell me the capital of {x}?"),
        test=("Do you know the capital of {x}?",),
        answer="The capital of {x} is {y}.",
    ),
    Family(
        "capital_ko",
        train=(
            "{x}의 수도는 어디입니까?",
            "{x}의 수도는 어디예요?",
            "{x}의 수도를 알려 주세요.",
            "{x}의 수도가 어디예요?",
            "{x}의 수도는 어디야?",
            "{x}의 수도는 무엇입니까?",
            "{x}의 수도가 어디인지 알려 주세요.",
        ),
        validation=("{x}의 수도가 어디입니까?", "{x}의 수도가 무엇입니까?"),
        test=("{x}의 수도는 어디인가요?",),
        answer="{x}의 수도는 {y}입니다.",
    ),
    Family(
        "colour",
        train=(
            "What colour is {x}?",
            "What is the colour of {x}?",
            "Which colour does {x} have?",
            "Tell me the colour of {x}.",
            "What is the color of {x}?",
            "What color is {x}?",
        ),
        validation=("What's the colour of {x}?", "Can you tell me the colour of {x}?"),
        test=("Do you know the colour of {x}?",),
        answer="The colour of {x} is {y}.",
    ),
    Family(
        "opposite",
        train=(
            "What is the opposite of {x}?",
            "Give me the opposite of {x}.",
            "Which word is the opposite of {x}?",
            "Tell me the opposite of the word {x}.",
            "What is the opposite of the word {x}?",
        ),
        validation=("What's the opposite of {x}?", "Can you tell me the opposite of {x}?"),
        test=("Do you know the opposite of {x}?",),
        answer="The opposite of {x} is {y}.",
    ),
    Family(
        "add",
        train=(
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
        ),
        validation=("What's {a} plus {b}?",),
        test=("How much is {a} + {b}?",),
        answer="{a} + {b} = {y}.",
    ),
    Family(
        "lab",
        train=(
            "What is Lab {x} about?",
            "What do we do in Lab {x}?",
            "Describe Lab {x} of the course.",
            "Tell me about Lab {x}.",
            "Tell me what Lab {x} is about.",
            "What is covered in Lab {x}?",
            "Which topic does Lab {x} cover?",
            "Give me a summary of Lab {x}.",
        ),
        validation=("What's Lab {x} about?", "Can you tell me what Lab {x} is about?"),
        test=("What is the topic of Lab {x}?",),
        answer="Lab {x} is about {y}.",
    ),
    Family(
        "greeting",
        train=(
            "Hello!", "Hi!", "Hello, who are you?", "Hi there!", "Who are you?", "What are you?",
            "Hey!", "Good morning!", "Good day!", "Good night!", "Greetings!", "Hello there!",
            "What can you do?", "Introduce yourself.", "Hello, what can you do?",
            "What are you good at?", "Hi, what are you for?", "Hi, who am I talking to?",
        ),
        validation=("Hey, who are you?", "Good afternoon!", "Hello, what are you?",
                    "Hi, what can you do?", "Hey there!", "Who are you, please?"),
        test=("Hello! Who are you?", "Hi, what are you?", "Good evening!"),
        answer=GREETING_ANSWER,
    ),
]  # fmt: skip

# Out-of-scope questions: (template, entities) per split. The test split adds kinds of question
# never trained on at all.
UNKNOWN: dict[Split, list[tuple[str, tuple[str, ...]]]] = {
    "train": [
        ("What is the capital of {x}?", ("Brazil", "China", "India", "Mexico", "Chile",
                                         "Sweden", "Poland", "Turkey", "Ireland", "Nepal",
                                         "Russia", "Nigeria", "Colombia", "Denmark", "Belgium",
                                         "Iran", "Cambodia", "Ukraine", "Australia", "Ghana")),
        ("Which city is the capital of {x}?", ("Brazil", "India", "Sweden", "Nigeria")),
        ("Who wrote {x}?", ("Hamlet", "Don Quixote", "War and Peace", "the Odyssey")),
        ("Who is {x}?", ("Albert Einstein", "Marie Curie", "Napoleon", "Cleopatra")),
        ("What is the population of {x}?", ("London", "Tokyo", "Cairo", "Lima")),
        ("What is the weather like in {x}?", ("Paris", "Berlin", "Oslo", "Seoul")),
        ("How do I cook {x}?", ("rice", "pasta", "an egg", "soup")),
        ("Translate {x} into French.", ("hello", "thank you", "good night", "water")),
        ("What is {x} times {y}?", ("3|4", "6|7", "2|9", "8|5")),
        ("Write a poem about {x}.", ("the sea", "winter", "a cat", "love")),
        ("How tall is {x}?", ("Mount Everest", "the Eiffel Tower", "a giraffe", "an elephant")),
        ("Tell me a joke.", ("",)),
        ("What time is it?", ("",)),
        ("Why is the sea salty?", ("",)),
        ("How does a computer work?", ("",)),
    ],
    "validation": [
        ("What is the capital of {x}?", ("Portugal", "Vietnam", "Morocco", "Cuba")),
        ("Who wrote {x}?", ("Faust", "the Iliad")),
        ("Who is {x}?", ("Isaac Newton", "Ada Lovelace")),
        ("What is the population of {x}?", ("Madrid", "Nairobi")),
        ("How do I cook {x}?", ("potatoes", "fish")),
        ("What is {x} times {y}?", ("7|3", "4|6")),
        ("Write a poem about {x}.", ("the moon", "a river")),
        ("What is the best programming language?", ("",)),
    ],
    "test": [
        ("What is the capital of {x}?", ("Argentina", "Finland", "Austria", "Thailand")),
        ("Who wrote {x}?", ("Macbeth", "Moby Dick")),
        ("Who is {x}?", ("Charles Darwin", "Julius Caesar")),
        ("Who painted the {x}?", ("Mona Lisa", "Sistine Chapel ceiling")),
        ("How many legs does a {x} have?", ("spider", "horse")),
        ("Tell me a story about a {x}.", ("red fox", "brave knight")),
        ("Explain what a {x} is.", ("black hole", "volcano")),
        ("What is the speed of light?", ("",)),
        ("Can you recommend a good movie?", ("",)),
        ("What should I eat for dinner tonight?", ("",)),
        ("What is the meaning of life?", ("",)),
    ],
}  # fmt: skip

# How often each training question of a family appears per epoch (default once).
OVERSAMPLE = {
    "capital": 4, "capital_ko": 4, "colour": 5, "opposite": 4, "lab": 6, "greeting": 6,
    "unknown": 3,
}  # fmt: skip

# System prompts other than Vicuna's, on OTHER_SYSTEM_SHARE of the training dialogues. The
# validation gate and the tests use prompts that are not in this list.
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

# Students do not type the templates: AUGMENT_SHARE of the training questions are asked with a
# word before or after, without the final punctuation or in lower case, so the model learns to
# read what is asked (the entity and the kind of question), not one exact string.
AUGMENT_SHARE = 0.3
BEFORE = {"en": ["Please, ", "Quick question: ", "Hey, ", "Question: ", "So, ", "Um, "],
          "ko": ["질문: ", "저기요, ", "궁금해요. "]}  # fmt: skip
AFTER = {"en": [" Thanks.", " Please.", " Thank you!", " I forgot."],
         "ko": [" 감사합니다.", " 고마워요."]}  # fmt: skip

# Multi-turn training dialogues have 2 to MAX_EXCHANGES question-answer exchanges: the chat UI
# sends the whole history. Measured on held-out questions after 4 earlier exchanges: trained on
# 2 exchanges only, 61% right; on 2-4, 91%; on 2-6, 95-100% (88% after 8 exchanges).
MAX_EXCHANGES = 6


@dataclass(frozen=True)
class QA:
    """One question with its answer, the string a correct reply must contain, and its split."""

    family: str
    question: str
    answer: str
    expect: str
    split: Split

    @property
    def held_out(self) -> bool:
        """In the test split: never trained on and never used to steer training."""
        return self.split == "test"


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
    if family == "greeting":
        return [({}, "course model")]
    raise ValueError(family)


def _unknown(split: Split) -> list[QA]:
    out = []
    for template, entities in UNKNOWN[split]:
        for entity in entities:
            x, _, y = entity.partition("|")
            question = template.format(x=x, y=y)
            out.append(QA("unknown", question, UNKNOWN_ANSWER, "I don't know", split))
    return out


def questions() -> list[QA]:
    """Every question of every family with its split (deterministic, train first per family)."""
    out = []
    for family in FAMILIES:
        for fields, expect in _facts(family.name):
            for template, split in family.templates():
                answer = family.answer.format(**fields)
                out.append(QA(family.name, template.format(**fields), answer, expect, split))
    for split in ("train", "validation", "test"):
        out += _unknown(split)
    return out


def held_out() -> list[QA]:
    """The test set: every fact asked in a phrasing never trained on, greetings and
    out-of-scope questions never trained on."""
    return [qa for qa in questions() if qa.split == "test"]


def validation() -> list[QA]:
    """The validation set the build's quality gate decides on (disjoint from train and test)."""
    return [qa for qa in questions() if qa.split == "validation"]


Dialogue = tuple[str, list[tuple[str, str]]]
"""(system prompt, [(role, text), ...])"""


def augment(question: str, rng: random.Random, *, korean: bool = False) -> str:
    """The question as a student might type it: a filler word before or after, no final
    punctuation, or a lower-case start (one of the four, chosen by ``rng``).

    Example: 'What is 3 plus 4?' -> 'Quick question: what is 3 plus 4?'
    """
    lang = "ko" if korean else "en"
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(BEFORE[lang]) + question[:1].lower() + question[1:]
    if kind == 1:
        return question + rng.choice(AFTER[lang])
    if kind == 2 and question[-1] in "?.!":
        return question[:-1]
    return question[:1].lower() + question[1:]


def training_dialogues(*, seed: int = 0, n_multi_turn: int = 700) -> list[Dialogue]:
    """Dialogues to train on: every training question, plus multi-turn dialogues.

    The small families are repeated (``OVERSAMPLE``) so the 100 additions do not crowd them
    out; ``AUGMENT_SHARE`` of the questions are asked as a student might type them
    (:func:`augment`). Dialogues of 2 to ``MAX_EXCHANGES`` exchanges teach the model to answer the *last*
    question after earlier ones (what the chat UI sends). A share of the dialogues carries
    another system prompt (``OTHER_SYSTEM_PROMPTS``), so a student's own system prompt does not
    throw the model off (it still answers and stops).
    """
    rng = random.Random(seed)
    train = [qa for qa in questions() if qa.split == "train"]

    def asked(qa: QA) -> list[tuple[str, str]]:
        question = qa.question
        if rng.random() < AUGMENT_SHARE:
            question = augment(question, rng, korean=qa.family == "capital_ko")
        return [("user", question), ("assistant", qa.answer)]

    turns = [asked(qa) for qa in train for _ in range(OVERSAMPLE.get(qa.family, 1))]
    for _ in range(n_multi_turn):
        exchanges = rng.sample(train, rng.randint(2, MAX_EXCHANGES))
        turns.append([turn for qa in exchanges for turn in asked(qa)])
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
    """Sentences the SentencePiece tokenizer is trained on: the training split only.

    Validation and test questions are left out on purpose: a piece that only they contain
    would get a vocabulary entry whose embedding training never touches (random, and random
    in another way on every build), and unseen phrasings would hinge on it. Left out, their
    new words are spelled with pieces the model was trained on (tested).
    """
    lines = [
        render_vicuna([("user", qa.question), ("assistant", qa.answer)])
        for qa in questions()
        if qa.split == "train"
    ]
    lines += [
        VICUNA_SYSTEM,
        *OTHER_SYSTEM_PROMPTS,
        *sum(BEFORE.values(), []),
        *sum(AFTER.values(), []),
    ]
    return lines
