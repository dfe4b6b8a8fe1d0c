"""The embedded default text corpus: English-like prose written by a fixed program, so that
``dataset=text`` needs no download and carries no one else's licence.

What it holds. A small invented village (people, animals, places, things) whose facts are fixed
once (who lives where, who likes what, which colour a thing is) and then told again and again
in varied sentences: short stories, dialogues, lists, counting and sums written in words, and
a gazetteer. A language model therefore has something real to learn at several ranges: spelling
and grammar (local), agreement of a pronoun with its person (a clause away), the facts of the
world (across the whole corpus) and small sums (arithmetic in words). That makes perplexity tell
a pruned model from a dense one, which random text could not.

Determinism. The text is a function of ``seed`` and ``size`` only: the generator draws from its
own linear congruential sequence (not :mod:`random`, whose methods other than ``random()`` may
change between Python versions), so every machine produces the same bytes (checked by a digest
in the tests).
"""

from __future__ import annotations

import hashlib

DEFAULT_SIZE = 600_000  # characters (ASCII, so bytes too)
DEFAULT_SEED = 1234

PEOPLE = (
    ("Mara", "she"),
    ("Tomas", "he"),
    ("Ilse", "she"),
    ("Bruno", "he"),
    ("Odile", "she"),
    ("Pavel", "he"),
    ("Greta", "she"),
    ("Anselm", "he"),
    ("Wren", "she"),
    ("Casimir", "he"),
    ("Lotte", "she"),
    ("Emil", "he"),
    ("Nadia", "she"),
    ("Oskar", "he"),
    ("Hedda", "she"),
    ("Jonas", "he"),
    ("Rosa", "she"),
    ("Felix", "he"),
    ("Agnes", "she"),
    ("Matteo", "he"),
)
ANIMALS = ("fox", "heron", "badger", "goat", "owl", "hare", "otter", "crow", "mole", "lynx")
PLACES = ("mill", "orchard", "bridge", "chapel", "market", "forge", "meadow", "harbour", "bakery", "well")
THINGS = ("lamp", "kettle", "basket", "ladder", "bell", "rope", "lantern", "spoon", "drum", "cart")
COLOURS = ("red", "blue", "green", "yellow", "grey", "white", "black", "brown")
FOODS = ("bread", "apples", "cheese", "plums", "soup", "honey", "fish", "pears", "nuts", "eggs")
WEATHER = ("rain", "fog", "snow", "wind", "sun", "frost")
TIMES = ("In the morning", "At noon", "In the evening", "Late at night", "At dawn", "After supper")
VERBS_GO = ("walked", "ran", "hurried", "wandered", "rode", "crept")
ADJECTIVES = (
    "old",
    "quiet",
    "muddy",
    "narrow",
    "bright",
    "crooked",
    "cold",
    "busy",
    "empty",
    "tall",
    "small",
    "wet",
    "dusty",
    "golden",
    "sleepy",
    "noisy",
    "broken",
    "warm",
    "hidden",
    "round",
)
ACTIONS = (
    "sang near",
    "slept under",
    "waited by",
    "danced around",
    "hid behind",
    "looked at",
    "climbed over",
    "listened to",
    "ran past",
    "dreamed of",
    "counted the stones of",
    "painted",
    "swept",
    "guarded",
)
ADVERBS = ("slowly", "again", "for a while", "without a sound", "all day", "once more", "quite happily", "in secret")
NUMBERS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
)


class _Draw:
    """Numbers from a 64-bit linear congruential sequence (Knuth's MMIX constants)."""

    def __init__(self, seed: int) -> None:
        self.state = (seed * 2654435761 + 1) % 2**64

    def below(self, n: int) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 33) % n

    def pick(self, items):
        return items[self.below(len(items))]


class _World:
    """The facts, fixed once per seed: each person's home, liked food, pet and thing (with its colour)."""

    def __init__(self, draw: _Draw) -> None:
        self.home = {name: draw.pick(PLACES) for name, _ in PEOPLE}
        self.food = {name: draw.pick(FOODS) for name, _ in PEOPLE}
        self.pet = {name: ANIMALS[i % len(ANIMALS)] for i, (name, _) in enumerate(PEOPLE)}
        self.thing = {name: THINGS[(3 * i + 1) % len(THINGS)] for i, (name, _) in enumerate(PEOPLE)}
        self.colour = {thing: draw.pick(COLOURS) for thing in THINGS}
        self.pronoun = dict(PEOPLE)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _story(draw: _Draw, world: _World) -> str:
    name, pronoun = draw.pick(PEOPLE)
    friend, friend_pronoun = draw.pick([person for person in PEOPLE if person[0] != name])
    place = draw.pick(PLACES)
    thing = world.thing[name]
    lines = [
        f"{draw.pick(TIMES)}, {name} {draw.pick(VERBS_GO)} to the {place}.",
        f"{_cap(pronoun)} carried the {world.colour[thing]} {thing}, because {pronoun} never went out without it.",
        f"There {pronoun} met {friend}, who lives by the {world.home[friend]}.",
        f'"Have you seen my {world.pet[friend]}?" asked {friend}.',
        f'"No," said {name}, "but I saw {world.food[name]} on the table at the {world.home[name]}."',
        f"{friend} laughed, and {friend_pronoun} said that {friend_pronoun} would rather have {world.food[friend]}.",
        f"Then the {draw.pick(WEATHER)} came, and they went home together.",
    ]
    keep = 3 + draw.below(len(lines) - 2)
    return " ".join(lines[:keep])


def _facts(draw: _Draw, world: _World) -> str:
    name, pronoun = draw.pick(PEOPLE)
    kinds = (
        f"{name} lives by the {world.home[name]}.",
        f"{name} likes {world.food[name]} best of all.",
        f"The {world.pet[name]} belongs to {name}.",
        f"{name} owns a {world.colour[world.thing[name]]} {world.thing[name]}.",
        f"When {name} is hungry, {pronoun} eats {world.food[name]}.",
        f"Ask {name} about the {world.pet[name]}, and {pronoun} will talk for an hour.",
    )
    return " ".join(draw.pick(kinds) for _ in range(2 + draw.below(3)))


def _sum(draw: _Draw) -> str:
    a, b = draw.below(10), draw.below(9)
    if draw.below(2):
        return f"{_cap(NUMBERS[a])} and {NUMBERS[b]} make {NUMBERS[a + b]}."
    big, small = max(a, b), min(a, b)
    return f"{_cap(NUMBERS[big])} take away {NUMBERS[small]} leaves {NUMBERS[big - small]}."


def _counting(draw: _Draw) -> str:
    start = draw.below(8)
    length = 3 + draw.below(6)
    thing = draw.pick(THINGS)
    words = ", ".join(NUMBERS[start + i] for i in range(length))
    return f"Counting the {thing}s: {words}."


def _gazetteer(draw: _Draw, world: _World) -> str:
    place = draw.pick(PLACES)
    residents = [name for name, _ in PEOPLE if world.home[name] == place]
    if not residents:
        return f"Nobody lives by the {place}; only the {draw.pick(ANIMALS)} goes there."
    if len(residents) == 1:
        return f"By the {place} lives {residents[0]}."
    return f"By the {place} live {', '.join(residents[:-1])} and {residents[-1]}."


def _scene(draw: _Draw) -> str:
    subject = draw.pick((draw.pick(PEOPLE)[0], f"the {draw.pick(ADJECTIVES)} {draw.pick(ANIMALS)}"))
    return (
        f"{_cap(subject)} {draw.pick(ACTIONS)} the {draw.pick(ADJECTIVES)} {draw.pick(PLACES)} "
        f"{draw.pick(ADVERBS)}, while the {draw.pick(WEATHER)} {draw.pick(('fell', 'rose', 'lingered', 'passed'))}."
    )


def _paragraph(draw: _Draw, world: _World) -> str:
    kind = draw.below(12)
    if kind < 4:
        return _story(draw, world)
    if kind < 6:
        return _facts(draw, world)
    if kind < 8:
        return " ".join(_scene(draw) for _ in range(1 + draw.below(3)))
    if kind < 10:
        return " ".join(_sum(draw) for _ in range(2 + draw.below(3)))
    if kind < 11:
        return _counting(draw)
    return _gazetteer(draw, world)


def generate_corpus(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> str:
    """``size`` characters of the village's prose (paragraphs separated by blank lines)."""
    draw = _Draw(seed)
    world = _World(draw)
    paragraphs: list[str] = []
    total = 0
    while total < size:
        paragraph = _paragraph(draw, world)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:size]


def corpus_digest(text: str) -> str:
    """The SHA-256 of ``text``'s UTF-8 bytes (the tests pin the default corpus with it)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
