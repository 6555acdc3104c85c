"""Entries of a synthetic embedding space for the index and service tests."""

from __future__ import annotations

import numpy as np

VOCAB = {"gender": ["male", "female"], "backpack": ["no", "yes"],
         "upcolor": ["black", "white", "red", "purple", "yellow", "gray", "blue", "green"]}



def make_entries(source: str, n: int, dim: int = 16, seed: int = 0, start: int = 1) -> list:
    """``n`` entries of ``source`` with random unit embeddings and attributes (deterministic)."""
    from personkit.index.entries import Entry

    rng = np.random.default_rng([seed, n, dim, sum(map(ord, source))])
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = []
    for i in range(n):
        attrs = {a: _attribute(labels, rng) for a, labels in VOCAB.items()}
        out.append(Entry(source, start + i, emb[i], attrs, b"\xff\xd8jpeg" + bytes([i % 256]),
                         first_frame=i + 1, last_frame=i + 5, first_time=i / 10,
                         last_time=(i + 4) / 10, identity=f"synth:0:{i % 3}"))
    return out


def _attribute(labels: list[str], rng: np.random.Generator) -> tuple:
    """(label, confidence, positive): a binary attribute's class-1 probability agrees with
    its label and confidence; None for the others."""
    k, conf = int(rng.integers(len(labels))), float(rng.uniform(0.5, 1))
    return labels[k], conf, (None if len(labels) != 2 else conf if k == 1 else 1 - conf)
