"""Filters and entry ids (personkit.index.entries)."""

import pytest
from index_utils import VOCAB

from personkit.index.entries import IndexInfo, parse_where, split_entry_id


def test_where_terms_aliases_and_source():
    got = parse_where("gender=female, backpack=yes upper_color=Red source=cam1", VOCAB)
    assert got == {"gender": "female", "backpack": "yes", "upcolor": "red", "source": "cam1"}
    assert parse_where({"Gender": "MALE"}, VOCAB) == {"gender": "male"}
    assert parse_where("", VOCAB) == {} and parse_where(None, VOCAB) == {}


@pytest.mark.parametrize("text, message", [
    ("colour=red", "unknown attribute 'colour' in the filter; valid: gender, backpack, upcolor"),
    ("upcolor=teal", "unknown value 'teal' for attribute 'upcolor'; valid: black, white, red"),
    ("gender female", "filter term 'gender' is not NAME=VALUE"),
    ("gender=", "filter term 'gender=' is not NAME=VALUE"),
])
def test_bad_filters_name_the_term_and_list_the_valid_ones(text, message):
    with pytest.raises(ValueError, match=message):
        parse_where(text, VOCAB)


def test_entry_ids():
    assert split_entry_id("cam:1:7") == ("cam:1", 7)
    for bad in ("cam", "cam:x", ":3"):
        with pytest.raises(ValueError, match="not an entry id"):
            split_entry_id(bad)


def test_other_embedding_space_is_refused_naming_both():
    a = IndexInfo("aaaa", 16, VOCAB)
    a.check_same_space(IndexInfo("aaaa", 16, dict(VOCAB)), "index X")
    with pytest.raises(ValueError, match=r"index X holds people of model aaaa \(embedding width "
                                         r"16.*come from model bbbb \(width 32"):
        a.check_same_space(IndexInfo("bbbb", 32, VOCAB), "index X")
    assert IndexInfo.from_dict(a.to_dict()) == a
