"""A small real embedding model for the hybrid-ranking tests: hashed character trigrams.

Texts sharing many trigrams ("configurations", "load_configuration") get close vectors, which
BM25's whole-word matching does not see; that difference is what the tests rely on.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

DIMENSIONS = 512


class TrigramEmbedder:
    name = "trigram-512"

    def __init__(self) -> None:
        self.calls: list[int] = []  # how many texts each call embedded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            lowered = f"  {text.lower()}  "
            for i in range(len(lowered) - 2):
                out[row, zlib.crc32(lowered[i : i + 3].encode()) % DIMENSIONS] += 1.0
            norm = float(np.linalg.norm(out[row]))
            if norm:
                out[row] /= norm
        return out


def factory() -> TrigramEmbedder:
    return TrigramEmbedder()
