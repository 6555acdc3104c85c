"""Find a person: a persistent index of the people personkit has seen (ReID embedding,
attributes, where and when, a thumbnail), searched by example and by attributes."""

from personkit.index.entries import Entry, IndexInfo, parse_where
from personkit.index.people import PeopleIndex

__all__ = ["Entry", "IndexInfo", "PeopleIndex", "parse_where"]
