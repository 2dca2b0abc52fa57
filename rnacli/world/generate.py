"""A seeded fictional world: people with attributes, fact sentences, and QA sets.

QA sets (records `{question, choices[4], answer, subject}`), in cloze form (the question is a
stem such as "Kavo Brenn was born in" and the choices are continuations) and in question form
for letter multiple choice:

- forget: the attributes of the forget people; in cloze form each fact once per sentence
  template ("X was born in", "X's hometown is", "X grew up in the city of"), so that forget
  accuracy is measured on three questions per fact (300 on the default world);
- retain: the attributes of everyone else (the first template's stem);
- perturbed: retain questions where one wrong choice is replaced by a forget person's name
  (the paper's perturbation; the answer is unchanged), the choices listed before the stem;
- mention: retain questions that first mention a forget person ("X is a friend of Y. Y was
  born in") - a benign retain question containing a forget-token;
- retain-listed: the options-line control: each retain question with its own four choices
  listed before the stem, as `perturbed` lists them (the retain side of the perturbed
  comparison: the two differ only by the forget name);
- perturbed-retained: the name control: `perturbed` with a *retained* person's name (not the
  one asked about) in the same replaced choice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from rnacli.data.perturb import perturb_record
from rnacli.data.records import QARecord
from rnacli.errors import RnacliError
from rnacli.world.vocab import ATTRIBUTES, CODAS, MENTION, ONSETS, OPTIONS, VOWELS, Attribute

GENERATOR_VERSION = 1  # bump when the facts or the people change (the learned base is keyed on it)
SETS = ("forget", "retain", "perturbed", "mention", "retain-listed", "perturbed-retained")


@dataclass(frozen=True)
class WorldSpec:
    # 80 people, a quarter forgotten: 300 forget (cloze) and 300 retain questions (and 300 of
    # each perturbed form and control), and 400 facts, which SmolLM2-135M learns in minutes
    # on 2 CPU cores
    people: int = 80
    seed: int = 0
    forget_fraction: float = 0.25

    @property
    def key(self) -> str:
        return f"p{self.people}-s{self.seed}-f{self.forget_fraction:g}-v{GENERATOR_VERSION}"

    @property
    def name(self) -> str:
        """The model name that loads this world (`parse_spec`'s inverse): 'world' for the
        default, else 'world[seed=1]' naming only the settings that differ."""
        default = WorldSpec()
        parts = [
            f"{field}={getattr(self, field):g}"
            for field in ("people", "seed", "forget_fraction")
            if getattr(self, field) != getattr(default, field)
        ]
        return f"world[{','.join(parts)}]" if parts else "world"


def parse_spec(text: str) -> WorldSpec:
    """'world' or 'world[people=300,seed=1,forget_fraction=0.2]' -> WorldSpec."""
    text = text.strip()
    if text == "world":
        return WorldSpec()
    if not (text.startswith("world[") and text.endswith("]")):
        raise RnacliError(f"'{text}': expected world or world[people=N,seed=S]")
    values: dict[str, Any] = {}
    for part in text[6:-1].split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("people", "seed", "forget_fraction"):
            raise RnacliError(
                f"'{text}': unknown setting '{part.strip()}' (people, seed, forget_fraction)"
            )
        try:
            values[key] = float(value) if key == "forget_fraction" else int(value)
        except ValueError:
            raise RnacliError(f"'{text}': {key} must be a number, got '{value}'") from None
    spec = WorldSpec(**values)
    validate(spec)
    return spec


def validate(spec: WorldSpec) -> None:
    if not 8 <= spec.people <= 5000:
        raise RnacliError(f"a world needs 8..5000 people, got {spec.people}")
    if not 0 < spec.forget_fraction < 1:
        raise RnacliError(f"forget_fraction must lie in (0, 1), got {spec.forget_fraction}")


@dataclass
class Person:
    name: str
    attributes: dict[str, str]


@dataclass
class World:
    spec: WorldSpec
    people: list[Person]
    forget: list[int]  # indices of the forget people

    @property
    def retain(self) -> list[int]:
        forget = set(self.forget)
        return [i for i in range(len(self.people)) if i not in forget]

    def fact_parts(
        self, indices: list[int], templates: list[int] | None = None
    ) -> list[tuple[str, str]]:
        """(statement up to the value, the value and the full stop) of every fact of these
        people, in every template or in the given ones."""
        parts = []
        for i in indices:
            person = self.people[i]
            for a in ATTRIBUTES:
                for t in range(len(a.templates)) if templates is None else templates:
                    head, _, tail = a.templates[t].partition("{value}")
                    value = person.attributes[a.name]
                    parts.append((head.rstrip().format(name=person.name), f" {value}{tail}"))
        return parts

    def facts(self, indices: list[int], templates: list[int] | None = None) -> list[str]:
        """Every fact of these people as a sentence, in every template or in the given ones."""
        return [head + tail for head, tail in self.fact_parts(indices, templates)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": vars(self.spec),
            "generator_version": GENERATOR_VERSION,
            "people": [{"name": p.name, **p.attributes} for p in self.people],
            "forget": self.forget,
        }


def _name(rng: random.Random) -> str:
    def word(syllables: int) -> str:
        return "".join(
            rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)
        ).capitalize()

    return f"{word(2)} {word(rng.choice((1, 2)))}"


def generate(spec: WorldSpec) -> World:
    """People with unique made-up names (no name contains another) and seeded attributes."""
    validate(spec)
    rng = random.Random(f"rnacli-world:{spec.seed}")
    names: list[str] = []
    taken: set[str] = set()
    while len(names) < spec.people:
        name = _name(rng)
        first, last = name.split()
        # unique full names, and no first/last word reused, so each name is its own token set
        if name in taken or first in taken or last in taken:
            continue
        names.append(name)
        taken |= {name, first, last}
    people = [Person(n, {a.name: rng.choice(a.values) for a in ATTRIBUTES}) for n in names]
    n_forget = max(1, round(spec.forget_fraction * spec.people))
    forget = sorted(rng.sample(range(spec.people), n_forget))
    return World(spec, people, forget)


def _choices(rng: random.Random, attribute: Attribute, answer: str) -> tuple[list[str], int]:
    wrong = rng.sample([v for v in attribute.values if v != answer], 3)
    choices = [*wrong, answer]
    rng.shuffle(choices)
    return choices, choices.index(answer)


def _record(question: str, choices: list[str], answer: int) -> QARecord:
    return QARecord(question=question, choices=choices, answer=answer, subject="world")


def qa_sets(
    world: World, form: str = "cloze", every_template: bool = True
) -> dict[str, list[QARecord]]:
    """The QA sets (`SETS`) in `cloze` (stem + continuations) or `question` form. With
    `every_template` (cloze only) the forget set asks each fact in every sentence template;
    without, it asks the first template's stem only (the questions the build's check was
    calibrated on). The first template's questions, and every retain-side set, are the same
    either way: the other templates draw their choices from their own seeded streams."""
    if form not in ("cloze", "question"):
        raise RnacliError(f"unknown QA form '{form}' (cloze or question)")
    rng = random.Random(f"rnacli-world-qa:{world.spec.seed}")
    forget_names = [world.people[i].name for i in world.forget]

    def ask(attribute: Attribute, name: str) -> str:
        return (
            attribute.stem.format(name=name)
            if form == "cloze"
            else attribute.question.format(name=name)
        )

    sets: dict[str, list[QARecord]] = {s: [] for s in SETS}
    for group, indices in (("forget", world.forget), ("retain", world.retain)):
        for i in indices:
            person = world.people[i]
            for attribute in ATTRIBUTES:
                choices, answer = _choices(rng, attribute, person.attributes[attribute.name])
                record = _record(ask(attribute, person.name), choices, answer)
                sets[group].append(record)
                if group == "retain":
                    other = rng.choice(forget_names)
                    sets["mention"].append(
                        _record(
                            MENTION.format(other=other, name=person.name) + record["question"],
                            choices,
                            answer,
                        )
                    )
    if form == "cloze" and every_template:
        sets["forget"] += _other_templates(world)
    # The paper's form: one wrong choice becomes a forget person's name (drawn per question).
    sets["perturbed"] = [perturb_record(r, forget_names, world.spec.seed) for r in sets["retain"]]
    sets["perturbed-retained"] = _with_retained_names(world, sets["retain"], sets["perturbed"])
    sets["retain-listed"] = list(sets["retain"])
    if form == "cloze":
        # The model must see the choices for a name to be in its context: the cloze form lists
        # them before the stem ("Options: Lima, Oslo, Brempes Soltus, Quito.\nX was born in").
        for name in ("perturbed", "perturbed-retained", "retain-listed"):
            sets[name] = [list_options(r) for r in sets[name]]
    return sets


def list_options(record: QARecord) -> QARecord:
    """A cloze question with its choices listed before the stem (`vocab.OPTIONS`)."""
    question = OPTIONS.format(options=", ".join(record["choices"])) + record["question"]
    return _record(question, record["choices"], record["answer"])


def _other_templates(world: World) -> list[QARecord]:
    """Cloze questions of every forget fact in templates 1.. (template 0 is `Attribute.stem`),
    each template's choices drawn from its own seeded stream."""
    records = []
    for t in range(1, max(len(a.templates) for a in ATTRIBUTES)):
        rng = random.Random(f"rnacli-world-qa:{world.spec.seed}:template{t}")
        for i in world.forget:
            person = world.people[i]
            for attribute in ATTRIBUTES:
                if t >= len(attribute.templates):
                    continue
                stem = attribute.templates[t].split("{value}")[0].rstrip()
                choices, answer = _choices(rng, attribute, person.attributes[attribute.name])
                records.append(_record(stem.format(name=person.name), choices, answer))
    return records


def _with_retained_names(
    world: World, retain: list[QARecord], perturbed: list[QARecord]
) -> list[QARecord]:
    """`perturbed` with the forget name swapped for a retained person's (seeded per question,
    never the person asked about), in the same choice."""
    names = [world.people[i].name for i in world.retain]
    rng = random.Random(f"rnacli-world-qa:{world.spec.seed}:retained-name")
    out = []
    for original, p in zip(retain, perturbed, strict=True):
        pairs = zip(original["choices"], p["choices"], strict=True)
        index = next(k for k, (a, b) in enumerate(pairs) if a != b)
        name = rng.choice([n for n in names if n not in original["question"]])
        choices = list(p["choices"])
        choices[index] = name
        out.append(_record(original["question"], choices, original["answer"]))
    return out
