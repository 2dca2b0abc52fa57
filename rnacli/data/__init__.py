"""Data: source strings, QA sets, text corpora, perturbation."""

from rnacli.data.records import LETTERS, QARecord
from rnacli.data.sources import NAMED_SETS, load_corpus, load_qa

__all__ = ["LETTERS", "NAMED_SETS", "QARecord", "load_corpus", "load_qa"]
