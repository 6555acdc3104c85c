"""Find a person: a persistent index of the people personkit has seen (ReID embedding,
attributes, where and when, a thumbnail), searched by example and by attributes."""

from personkit.index.entries import (
    EmptyIndexError,
    Entry,
    ExampleError,
    FilterError,
    IndexInfo,
    parse_where,
)
from personkit.index.people import PeopleIndex

__all__ = ["EmptyIndexError", "Entry", "ExampleError", "FilterError", "IndexInfo",
           "PeopleIndex", "parse_where"]
