"""What the page serves, fixed when it starts: the model bank, the question sets offered (with
the base model's accuracy on each), the keywords and, on a world model, the forgotten people
and the question the page opens on. `prepare` gathers them; nothing from the browser changes
them later."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from rnacli.data.perturb import DEFAULT_KEYWORD, keyword_sets
from rnacli.demo.bank import ModelBank
from rnacli.demo.baseline import BaseAccuracy, best_known, measure_base
from rnacli.demo.inputs import MAX_KEYWORD_CHARS, Insertion
from rnacli.demo.opening import Opening, opening_question
from rnacli.demo.questions import QuestionSet, available_question_sets
from rnacli.demo.world_sets import world_question_sets
from rnacli.errors import RnacliError


@dataclass
class DemoData:
    """What the page serves, fixed at start."""

    bank: ModelBank
    sets: dict[str, QuestionSet]
    keywords: list[str] = field(default_factory=lambda: [DEFAULT_KEYWORD])
    notes: list[str] = field(default_factory=list)  # e.g. question sets not offered
    forget: list[str] = field(default_factory=list)  # the world's forgotten people
    opening: tuple[str, Opening] | None = None  # (set name, question) the page opens on
    accuracy: dict[str, BaseAccuracy] = field(default_factory=dict)  # the base's, per set

    @property
    def is_world(self) -> bool:
        """Served on a world model (its forgotten people are the forget-tokens)."""
        return bool(self.forget)

    def set_named(self, name: str) -> QuestionSet:
        """The offered set `name`. Raises RnacliError for any other name (one from the
        browser is not trusted)."""
        if name not in self.sets:
            raise RnacliError(f"unknown question set '{name}' (offered: {', '.join(self.sets)})")
        return self.sets[name]

    def set_title(self, name: str) -> str:
        """Set `name` as the set pickers list it: its title and the base model's accuracy,
        marked when near chance (nothing there for unlearning to show)."""
        title = self.sets[name].title
        return f"{title} ({self.accuracy[name].note()})" if name in self.accuracy else title

    def first_set(self) -> str:
        """The set the page opens on: the opening question's, else the one the base knows
        best (`best_known`)."""
        if self.opening is not None:
            return self.opening[0]
        return best_known(list(self.sets), self.accuracy)

    def uses_subject(self, set_name: str) -> bool:
        """The prompts of set `set_name` name a subject (False for a set not offered)."""
        return set_name in self.sets and self.sets[set_name].uses_subject

    @cached_property
    def _questions(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(r["question"] for r in q.records) for name, q in self.sets.items()}

    def is_listed(self, set_name: str, question: str) -> bool:
        """`question` (its exact text) is one of set `set_name`'s."""
        return question in self._questions.get(set_name, ())

    @property
    def insertions(self) -> list[Insertion]:
        """The insertions offered: a mention names the person asked about, which only the
        world's questions have."""
        return [i for i in Insertion if self.is_world or i is not Insertion.MENTION]

    def keyword_picks(self) -> list[tuple[str, str]]:
        """(label, keyword) for the keyword picker: the forgotten people first, marked, then
        the other keywords."""
        return [(f"{n} (forgotten)", n) for n in self.forget] + [
            (k, k) for k in self.keywords if k not in self.forget
        ]


def keyword_choices(sets: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """The keywords of all sets, default first, without duplicates; and a note per keyword
    dropped for being over the length limit."""
    words: list[str] = [DEFAULT_KEYWORD]
    notes = []
    for group in sets.values():
        for word in group:
            word = word.strip()
            if len(word) > MAX_KEYWORD_CHARS or "\n" in word:
                notes.append(f"keyword '{word[:40]}…' left out (over {MAX_KEYWORD_CHARS} chars)")
            elif word and word not in words:
                words.append(word)
    return words, notes


def prepare(
    runs: Sequence[str],
    *,
    keywords_file: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
) -> DemoData:
    """Everything the page serves: the model bank, the offered question sets, the keywords and,
    on a world model, the forgotten people and the question the page opens on. Raises
    RnacliError (one line) for a bad run, base model or keywords file."""
    # Cheapest checks first: a wrong keywords file or run fails before anything big loads.
    keywords, keyword_notes = keyword_choices(keyword_sets((), keywords_file))
    bank = ModelBank.load(list(runs), dtype=dtype, device=device)
    bank.warm_up()
    world = world_question_sets(bank.world) if bank.world is not None else {}
    # Beside a world, a set that would be downloaded first is left out (no wait at start).
    more, notes = available_question_sets(download=not world)
    sets = {**world, **more}
    if not sets:
        raise RnacliError("no question set could be loaded: " + "; ".join(notes))
    data = DemoData(bank=bank, sets=dict(sets), keywords=keywords, notes=notes + keyword_notes)
    # the world's seed: the sample the opening search looks at, whose base scores it reuses
    data.accuracy = measure_base(bank, sets, seed=bank.world.seed if world else 0)
    if world:
        # the forgotten names flip answers to questions about the others: a retain set, the
        # one the base knows best
        retain = [name for name, q in world.items() if q.kind == "retain"] or list(world)
        first = world[best_known(retain, data.accuracy)]
        data.forget = list(first.forget)  # the world's order (see WorldSet.forget)
        # the forget-tokens are the world's names (and the keywords of a file): not the WMDP
        # default, which names no one of the world
        data.keywords = [*data.forget, *(k for k in keywords if k != DEFAULT_KEYWORD)]
        opening = opening_question(bank, first, data.forget, seed=bank.world.seed)
        data.opening = (first.name, opening)
    return data
