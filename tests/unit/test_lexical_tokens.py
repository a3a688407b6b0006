"""Tokens of the lexical channel, a chunk's indexed text and the fused score's scale."""

from __future__ import annotations

from avatarstack.core.lexical import (
    IDENTIFIER_WEIGHT,
    Candidate,
    chunk_tokens,
    expand,
    fuse,
    indexed_text,
    normalised_lexical,
    query_tokens,
    related_terms,
    tokens,
)


def test_model_numbers_are_kept_whole_and_split_at_letter_digit_boundaries() -> None:
    assert tokens("Halvard T142") == ["halvard", "t142", "t", "142"]
    assert tokens("the X200's warranty") == ["x200", "x", "200", "warranti"]


def test_figures_keep_their_decimals_and_units_glued_to_them_are_split() -> None:
    assert tokens("7.5 hours, 7,5 h") == ["7.5", "hour", "7.5", "h"]
    assert tokens("rated at 12V") == ["rate", "12v", "12", "v"]
    assert tokens("power: 550 W") == ["power", "550", "w"]


def test_stop_words_are_dropped_and_words_stemmed() -> None:
    assert tokens("How long does the battery last on one charge?") == [
        "long",
        "batteri",
        "last",
        "one",
        "charg",
    ]


def test_a_chunk_counts_each_token_once_and_a_query_counts_identifiers_more() -> None:
    assert chunk_tokens("T142 T142 vacuum vacuum") == ["t142", "t", "142", "vacuum"]
    assert query_tokens("T142 warranty warranty") == [
        *["t142"] * IDENTIFIER_WEIGHT,
        "t",
        "142",
        "warranti",
    ]


def test_the_indexed_text_puts_title_and_heading_above_the_text() -> None:
    assert indexed_text("X200 manual", "Warranty", "Two years.") == (
        "X200 manual\nWarranty\nTwo years."
    )
    assert indexed_text(None, None, "Two years.") == "Two years."
    assert indexed_text("Warranty terms", "Warranty", "Two years.") == (
        "Warranty terms\nTwo years."
    )


def test_fused_scores_stay_between_0_and_1_and_rank_best_first() -> None:
    ranked = fuse(
        [
            Candidate("a", dense=1.0, lexical=1.0),
            Candidate("b", dense=0.2, lexical=normalised_lexical(30.0, 10.0)),
            Candidate("c", dense=0.0, lexical=normalised_lexical(0.0, 0.0)),
        ],
        dense_weight=0.25,
    )

    assert [(c.chunk_id, c.score) for c in ranked] == [("a", 1.0), ("b", 0.8), ("c", 0.0)]


def test_related_terms_map_question_words_to_manual_words_and_units() -> None:
    table = related_terms()

    assert {"weight", "kg"} <= set(table["heavi"])
    assert {"w", "power"} <= set(table["watt"])
    assert "v" in table["volt"]
    assert all(key not in related for key, related in table.items())


def test_the_operators_related_terms_add_to_the_built_in_ones() -> None:
    table = related_terms({"mains": "power supply", "heavy": "mass"})

    assert set(table["main"]) == {"power", "suppli"}
    assert {"weight", "kg", "mass"} <= set(table["heavi"])
    assert "main" not in related_terms()


def test_expansion_adds_each_missing_related_token_once_in_order() -> None:
    question = query_tokens("How heavy and how loud is the T142? Weight please.")

    added = expand(question, related_terms())

    assert "weight" not in added  # the question already has it
    assert added == list(dict.fromkeys(added))
    assert {"kg", "nois", "db"} <= set(added)  # stemmed, like every lexical token
    assert expand(query_tokens("T142 serial number"), related_terms()) == []
