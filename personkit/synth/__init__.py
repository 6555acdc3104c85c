"""A procedural synthetic person world that writes Market-1501-, MPII- and LIP-like datasets.

The real datasets cannot be downloaded here, so :func:`synthesize` renders stand-ins in their
exact native formats (file names, folder layouts, ``.mat``/JSON/CSV/PNG annotations), which the
ordinary dataset readers read. See ``docs/synth.md`` for the formats and design choices.
"""

from personkit.synth.presets import PRESETS, Preset, get_preset
from personkit.synth.preview import contact_sheet
from personkit.synth.world import SynthSummary, ensure_world, synthesize, world_key

__all__ = ["PRESETS", "Preset", "SynthSummary", "contact_sheet", "ensure_world", "get_preset",
           "synthesize", "world_key"]
