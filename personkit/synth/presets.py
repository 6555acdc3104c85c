"""Sizes of the synthetic world: ``tiny`` (tests), ``small`` (the demo), ``full``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Preset:
    """How much of each dataset to render (fields by keyword)."""

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
    "tiny": Preset(
        market_train_ids=120, market_test_ids=30, market_images_per_id=4, market_query_prob=0.75,
        market_junk_frac=0.15, market_distractor_frac=0.1, mpii_images=40, mpii_val_frac=0.3,
        mpii_test_frac=0.05, lip_train=40, lip_val=20, workers=1),
    "small": Preset(
        market_train_ids=750, market_test_ids=100, market_images_per_id=4, market_query_prob=0.75,
        market_junk_frac=0.15, market_distractor_frac=0.1, mpii_images=1000, mpii_val_frac=0.2,
        mpii_test_frac=0.03, lip_train=1200, lip_val=300, workers=2),
    "full": Preset(
        market_train_ids=751, market_test_ids=750, market_images_per_id=17,
        market_query_prob=0.75, market_junk_frac=0.15, market_distractor_frac=0.1,
        mpii_images=8000, mpii_val_frac=0.12, mpii_test_frac=0.03, lip_train=10000, lip_val=2000,
        workers=2),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synth preset {name!r}; valid: {sorted(PRESETS)}") from None
