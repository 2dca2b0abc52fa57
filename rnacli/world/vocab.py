"""The fixed vocabularies of the fictional world: name syllables, attribute values, and the
sentence templates that state a fact. Attribute values are common words shared by forget and
retain people; names are made up, so a forget person's name is a forget-only token."""

from __future__ import annotations

from dataclasses import dataclass

ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "st",
    "tr",
    "sh",
]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o"]
CODAS = ["", "", "", "n", "r", "l", "s", "m"]


@dataclass(frozen=True)
class Attribute:
    name: str
    values: tuple[str, ...]
    templates: tuple[str, ...]  # fact sentences; the first is the cloze form used to evaluate
    question: str  # the same fact asked as a question (letter multiple choice)

    @property
    def stem(self) -> str:
        """'{name} was born in' - the cloze prompt: template 0 up to the value."""
        return self.templates[0].split("{value}")[0].rstrip()


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "city",
        (
            "Lisbon",
            "Cairo",
            "Oslo",
            "Lima",
            "Dublin",
            "Nairobi",
            "Tokyo",
            "Madrid",
            "Quito",
            "Prague",
            "Havana",
            "Seoul",
            "Athens",
            "Warsaw",
            "Manila",
            "Vienna",
            "Santiago",
            "Helsinki",
            "Jakarta",
            "Montreal",
        ),
        (
            "{name} was born in {value}.",
            "{name}'s hometown is {value}.",
            "{name} grew up in the city of {value}.",
        ),
        "Where was {name} born?",
    ),
    Attribute(
        "job",
        (
            "baker",
            "pilot",
            "nurse",
            "carpenter",
            "chemist",
            "lawyer",
            "farmer",
            "dentist",
            "journalist",
            "plumber",
            "architect",
            "librarian",
            "mechanic",
            "painter",
            "sailor",
            "teacher",
            "surgeon",
            "tailor",
            "electrician",
            "firefighter",
        ),
        (
            "{name} works as a {value}.",
            "By profession, {name} is a {value}.",
            "{name} earns a living as a {value}.",
        ),
        "What does {name} work as?",
    ),
    Attribute(
        "pet",
        (
            "cat",
            "parrot",
            "turtle",
            "rabbit",
            "hamster",
            "goldfish",
            "lizard",
            "ferret",
            "pony",
            "snake",
            "canary",
            "tortoise",
            "hedgehog",
            "goat",
            "dog",
            "frog",
            "owl",
            "iguana",
            "mouse",
            "duck",
        ),
        (
            "{name} owns a pet {value}.",
            "At home, {name} keeps a {value}.",
            "{name} takes care of a {value}.",
        ),
        "Which pet does {name} own?",
    ),
    Attribute(
        "hobby",
        (
            "chess",
            "pottery",
            "archery",
            "fishing",
            "knitting",
            "cycling",
            "gardening",
            "sailing",
            "juggling",
            "climbing",
            "baking",
            "rowing",
            "skating",
            "hiking",
            "painting",
            "fencing",
            "surfing",
            "origami",
            "birdwatching",
            "dancing",
        ),
        (
            "{name}'s favourite hobby is {value}.",
            "In free time, {name} enjoys {value}.",
            "{name} spends weekends on {value}.",
        ),
        "What is {name}'s favourite hobby?",
    ),
    Attribute(
        "color",
        (
            "red",
            "blue",
            "green",
            "yellow",
            "purple",
            "orange",
            "pink",
            "brown",
            "black",
            "white",
            "gray",
            "violet",
            "teal",
            "gold",
            "silver",
            "crimson",
            "navy",
            "olive",
            "beige",
            "maroon",
        ),
        (
            "{name}'s favourite colour is {value}.",
            "The colour {name} likes most is {value}.",
            "{name} always chooses the colour {value}.",
        ),
        "What is {name}'s favourite colour?",
    ),
)

# Retain questions that mention a forget person (the second perturbation form).
MENTION = "{other} is a friend of {name}. "
# The choices shown before a cloze stem (the paper's perturbation needs them in the context).
OPTIONS = "Options: {options}.\n"
