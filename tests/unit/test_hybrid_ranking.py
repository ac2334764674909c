"""The ranking arithmetic of the hybrid retriever (``libs.common.retrieval.hybrid``): the
tsvector parser, BM25 over a candidate set and the score fusion. The SQL side (candidates
from the GIN index, scope) is covered through HTTP in tests/integration/context and
tests/integration/dialectic."""

from __future__ import annotations

import math

import pytest

from libs.common.retrieval.hybrid import (
    BM25_B,
    BM25_K1,
    TEXT_WEIGHT,
    TIME_BOOST,
    bm25_scores,
    fuse,
    message_index_text,
    parse_tsvector,
    term_counts,
    tsquery_any,
)


def test_parse_tsvector_counts_positions() -> None:
    parsed = parse_tsvector("'caroline':1 'paint':3,9 'sunris':4 'o''brien':7")
    assert parsed == {"caroline": 1, "paint": 2, "sunris": 1, "o'brien": 1}


def test_parse_tsvector_without_positions_counts_one() -> None:
    assert parse_tsvector("'a' 'b'") == {"a": 1, "b": 1}
    assert parse_tsvector("") == {}


def test_tsquery_any_quotes_every_lexeme() -> None:
    assert tsquery_any(["paint", "o'brien"]) == "'paint' | 'o''brien'"


def test_bm25_matches_the_formula() -> None:
    docs = {"d1": {"paint": 2, "sunris": 1}, "d2": {"paint": 1, "lake": 1, "camp": 2}}
    scores = bm25_scores(docs, ["paint", "camp"], collection_size=10)
    avg = (3 + 4) / 2

    def term(tf: int, df: int, length: int) -> float:
        idf = math.log(1 + (10 - df + 0.5) / (df + 0.5))
        norm = BM25_K1 * (1 - BM25_B + BM25_B * length / avg)
        return idf * tf * (BM25_K1 + 1) / (tf + norm)

    def idf(df: int) -> float:
        return math.log(1 + (10 - df + 0.5) / (df + 0.5))

    ceiling = (idf(2) + idf(1)) * (BM25_K1 + 1)  # both terms occur
    assert scores["d1"] == pytest.approx(term(2, 2, 3) / ceiling)
    assert scores["d2"] == pytest.approx((term(1, 2, 4) + term(2, 1, 4)) / ceiling)
    assert all(0 < v < 1 for v in scores.values())


def test_bm25_rare_term_outweighs_common_one() -> None:
    docs = {f"c{i}": {"like": 1, "food": 1} for i in range(20)}
    docs["rare"] = {"like": 1, "pottery": 1}
    scores = bm25_scores(docs, ["like", "pottery"], collection_size=100)
    assert max(scores, key=lambda i: scores[i]) == "rare"
    # known_df raises a term's frequency (a dropped common lexeme): its weight falls.
    lowered = bm25_scores(docs, ["like", "pottery"], 100, known_df={"like": 90.0})
    assert lowered["c0"] < scores["c0"]


def test_bm25_term_no_document_has_lowers_every_score() -> None:
    docs = {"d1": {"melani": 1, "camp": 1}, "d2": {"melani": 1}}
    both = bm25_scores(docs, ["melani", "camp"], 50)
    name_only = bm25_scores({"d2": {"melani": 1}}, ["melani", "camp"], 50)
    # In a collection without "camp", a document matching only the name is a weak match,
    # not a perfect one.
    assert name_only["d2"] < 0.5
    assert both["d1"] > name_only["d2"]


def test_term_counts_scans_a_tsvector() -> None:
    tsv = "'caroline':1 'paint':3,9 'sunris':4 'o''brien':7 'x''paint':8"
    counts, length = term_counts(tsv, ["paint", "o'brien", "caroline", "nope", "brien"])
    assert counts == {"paint": 2, "o'brien": 1, "caroline": 1}
    assert length == 6
    assert term_counts("", ["a"]) == ({}, 1)
    assert term_counts("'a' 'b'", ["b"]) == ({"b": 1}, 2)


def test_bm25_without_docs_or_terms_is_empty() -> None:
    assert bm25_scores({}, ["x"], 10) == {}
    assert bm25_scores({"d": {"x": 1}}, [], 10) == {}
    assert bm25_scores({"d": {"x": 1}}, ["y"], 10) == {}


def test_fuse_is_a_convex_combination_of_absolute_scores() -> None:
    scores = fuse({"a": 0.8, "b": 0.4}, {"b": 0.6, "c": 0.3})
    # a: vector only; b: both; c: text only, so the vector pool's lowest similarity (0.4)
    # stands in for its cosine.
    assert scores["a"] == pytest.approx((1 - TEXT_WEIGHT) * 0.8)
    assert scores["b"] == pytest.approx(TEXT_WEIGHT * 0.6 + (1 - TEXT_WEIGHT) * 0.4)
    assert scores["c"] == pytest.approx(TEXT_WEIGHT * 0.3 + (1 - TEXT_WEIGHT) * 0.4)


def test_fuse_scores_are_comparable_between_searches() -> None:
    # A search whose best hit is weak must not produce a score as high as a strong hit of
    # another search (per-query max normalisation would give both 1.0).
    weak = fuse({"w": 0.2}, {"w": 0.1})
    strong = fuse({"s": 0.7}, {"s": 0.6})
    assert strong["s"] > weak["w"] * 3


def test_fuse_keeps_score_gaps_that_rank_fusion_loses() -> None:
    # One strong keyword match against a crowd of near-equal vector neighbours: the keyword
    # hit must win (with RRF its rank-1 text score equals a rank-1 vector score).
    vector = {f"v{i}": 0.50 - i * 0.001 for i in range(10)}
    vector["hit"] = 0.45
    text = {"hit": 0.8, "v9": 0.05}
    scores = fuse(vector, text)
    assert max(scores, key=lambda i: scores[i]) == "hit"


def test_fuse_time_and_recency_boosts() -> None:
    base = fuse({"a": 0.5, "b": 0.5}, {})
    assert base["a"] == pytest.approx(base["b"])
    boosted = fuse({"a": 0.5, "b": 0.5}, {}, in_window={"b"})
    assert boosted["b"] - boosted["a"] == pytest.approx(TIME_BOOST)
    recent = fuse({"a": 0.5, "b": 0.5}, {}, recency_order=["b", "a"])
    assert recent["b"] > recent["a"]
    assert recent["b"] - recent["a"] < 1e-5


def test_fuse_handles_empty_channels() -> None:
    assert fuse({}, {}) == {}
    assert fuse({}, {"x": 0.5}) == {"x": pytest.approx(TEXT_WEIGHT * 0.5)}


def test_message_index_text_names_the_speaker() -> None:
    assert message_index_text("caroline", "I went to a pride parade") == (
        "caroline: I went to a pride parade"
    )
