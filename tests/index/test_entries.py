"""Filters and entry ids (personkit.index.entries)."""

import pytest
from index_utils import VOCAB

from personkit.index.entries import FilterError, IndexInfo, parse_where, split_entry_id


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
    with pytest.raises(FilterError, match=message):  # a ValueError too
        parse_where(text, VOCAB)


def test_conflicting_terms_are_refused_naming_both_and_repeats_are_fine():
    with pytest.raises(FilterError, match="conflicting filter terms gender='male' and "
                                          "gender='female'"):
        parse_where("gender=male gender=female", VOCAB)
    with pytest.raises(FilterError, match="upcolor='red' and upcolor='blue'"):
        parse_where({"upcolor": "red", "upper_color": "blue"}, VOCAB)  # an alias, same key
    with pytest.raises(FilterError, match="source='a' and source='b'"):
        parse_where("source=a source=b", VOCAB)
    assert parse_where("gender=male, Gender=MALE", VOCAB) == {"gender": "male"}


def test_quoted_values_keep_spaces_and_commas():
    assert parse_where('source="cam 1" gender=male', VOCAB) == {"source": "cam 1",
                                                                "gender": "male"}
    assert parse_where("source='a,b', backpack=yes", VOCAB) == {"source": "a,b",
                                                                "backpack": "yes"}
    assert parse_where('"source=x y"', VOCAB) == {"source": "x y"}  # the whole term quoted
    assert parse_where("source=c\\d", VOCAB) == {"source": "c\\d"}  # backslash: a character
    with pytest.raises(FilterError, match="unclosed quote in the filter"):
        parse_where('source="cam 1 gender=male', VOCAB)
    with pytest.raises(FilterError, match="filter term 'source=' is not NAME=VALUE"):
        parse_where('source=""', VOCAB)


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


def test_probability_terms_on_yes_no_attributes():
    """Issue #34: ``backpack>=0.3`` filters a binary attribute's probability of class 1;
    the decision stays ``backpack=yes``."""
    from personkit.index.entries import FilterError, parse_where

    vocab = {"backpack": ["no", "yes"], "upcolor": ["black", "red"] + ["x"],
             "hat": ["no", "yes"]}
    got = parse_where("backpack>=0.3 hat<0.1 upcolor=red", vocab)
    assert got == {"backpack": (">=", 0.3), "hat": ("<", 0.1), "upcolor": "red"}
    assert parse_where({"backpack": ">=0.25", "hat": ("<=", 1)}, vocab) == {
        "backpack": (">=", 0.25), "hat": ("<=", 1.0)}
    for bad, text in (("backpack>=1.5", "must be a number in \\[0, 1\\]"),
                      ("backpack>=-0.1", "must be a number in \\[0, 1\\]"),
                      ("backpack>=often", "must be a number in \\[0, 1\\]"),
                      ("upcolor>=0.3", "needs a yes/no attribute; upcolor has 3 classes"),
                      ("backpack>=0.3 backpack=yes", "conflicting filter terms backpack>=0.3"),
                      ("backpack=>0.3", "unknown value")):
        with pytest.raises(FilterError, match=text):
            parse_where(bad, vocab)


def test_the_index_uses_the_threshold_calibrated_between_track_means():
    from personkit.index.entries import IndexInfo

    crops = {"threshold": 0.0095, "recall": 0.47}
    info = IndexInfo("m", 8, dict(VOCAB), {**crops, "tracks": {"threshold": 0.0069}})
    assert info.same_person_threshold == 0.0069
    assert IndexInfo("m", 8, dict(VOCAB), crops).same_person_threshold == 0.0095  # older eval
    assert IndexInfo("m", 8, dict(VOCAB), None).same_person_threshold is None
