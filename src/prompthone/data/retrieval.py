"""BM25 search over a fixed list of passages, for retrieve-then-answer programs (e.g. HotPotQA).

Built on `bm25s` (maintained, numpy-only, fast sparse scoring) rather than `rank-bm25` (no release
since 2022, scores every passage in pure Python). Results must not move between runs, because
cached evaluations assume a program sees the same passages for the same query: so tokenization and
vocabulary ids are ours (first-seen order, no hash-ordered sets), and ties are broken by passage
position, not by whatever order a partial sort leaves them in.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

_TOKEN = re.compile(r"\w+")


def tokenize(text: str, stopwords: frozenset[str] = frozenset()) -> list[str]:
    """Lowercased word tokens with accents removed ("Beyoncé" -> "beyonce"), minus `stopwords`."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [t for t in _TOKEN.findall(folded) if t not in stopwords]


class BM25Index:
    """A BM25 (Lucene variant) index over `passages`; `search` returns the passages themselves.

    Only passages sharing at least one term with the query are returned, so a query about nothing in
    the corpus gets an empty list rather than k arbitrary passages.
    """

    def __init__(
        self,
        passages: Sequence[str],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stopwords: Iterable[str] | None = STOPWORDS_EN,
    ) -> None:
        if isinstance(passages, str):
            raise TypeError("passages must be a sequence of strings, not a single string")
        self.passages: tuple[str, ...] = tuple(passages)
        if not self.passages:
            raise ValueError("cannot build a BM25 index over an empty list of passages")
        for i, p in enumerate(self.passages):
            if not isinstance(p, str):
                raise TypeError(f"passages[{i}] must be a string, got {type(p).__name__}")
        self._stopwords = frozenset(stopwords or ())
        self._vocab: dict[str, int] = {}
        corpus_ids = [
            [self._vocab.setdefault(t, len(self._vocab)) for t in tokenize(p, self._stopwords)] for p in self.passages
        ]
        self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self._bm25.index((corpus_ids, dict(self._vocab)), show_progress=False)

    def __len__(self) -> int:
        return len(self.passages)

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every passage for `query` (0 where no query term occurs)."""
        ids = [self._vocab[t] for t in tokenize(query, self._stopwords) if t in self._vocab]
        if not ids:
            return np.zeros(len(self.passages), dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids))

    def search_with_scores(self, query: str, k: int = 5) -> list[tuple[str, float]]:
        """The top `k` (passage, score) pairs, best first; equal scores keep corpus order."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        scores = self.scores(query)
        order = np.lexsort((np.arange(len(scores)), -scores))  # last key first: score desc, then position
        return [(self.passages[i], float(scores[i])) for i in order[:k] if scores[i] > 0]

    def search(self, query: str, k: int = 5) -> list[str]:
        """The top `k` passages for `query`, best first; equal scores keep corpus order."""
        return [p for p, _ in self.search_with_scores(query, k)]


__all__ = ["BM25Index", "tokenize"]
