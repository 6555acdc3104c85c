"""Sizes of the synthetic world: ``tiny`` (tests), ``small`` (the demo), ``full``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """How much of each dataset to render."""

    market_train_ids: int
    market_test_ids: int
    market_images_per_id: float  # mean train/gallery images per identity
    market_query_prob: float  # chance of a query per (test id, camera)
    market_junk_frac: float  # '-1' junk images per good gallery image
    market_distractor_frac: float  # '0000' distractors per good gallery image
    mpii_images: int
    mpii_val_frac: float  # validation images among the annotated ones
    mpii_test_frac: float  # unannotated 'test' images (img_train = 0)
    lip_train: int
    lip_val: int
    workers: int  # processes (1 = in-process)


PRESETS: dict[str, Preset] = {
    "tiny": Preset(120, 30, 4, 0.75, 0.15, 0.1, 40, 0.3, 0.05, 40, 20, 1),
    "small": Preset(750, 100, 4, 0.75, 0.15, 0.1, 1000, 0.2, 0.03, 1200, 300, 2),
    "full": Preset(751, 750, 17, 0.75, 0.15, 0.1, 8000, 0.12, 0.03, 10000, 2000, 2),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synth preset {name!r}; valid: {sorted(PRESETS)}") from None
