"""Tests for rankcore.filters: grammar, errors, semantics, and a property test against a slow
pure-Python reference evaluator written here (independent of the module's internals)."""
from __future__ import annotations

import gc
import math
import operator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rankcore
from rankcore.core import native
from rankcore.datasets import synthetic
from rankcore.filters import (
    MAX_EXPRESSION_LENGTH,
    FilterPlan,
    FilterSyntaxError,
    InteractionHistory,
    compile_filter,
    parse_filter_values,
)
from rankcore.filters.history import rows_in_py  # nothing public runs it with the extension built
from rankcore.model.columns import column_from_values


# --------------------------------------------------------------------------------------------
# A small fake of what evaluate() reads
# --------------------------------------------------------------------------------------------

class FakeData:
    """``items``/``users``: name -> (kind, values); ``history``: user id -> [(row, event_type)]."""

    def __init__(self, items=None, users=None, user_ids=(), history=None):
        self.item_columns = {name.upper(): column_from_values(name, values, kind)
                             for name, (kind, values) in (items or {}).items()}
        self.user_columns = {name.upper(): column_from_values(name, values, kind)
                             for name, (kind, values) in (users or {}).items()}
        self._users = {u: i for i, u in enumerate(user_ids)}
        self._history = history or {}

    def user_row(self, user_id):
        return self._users.get(user_id, -1)

    def recent_interactions(self, user_id):
        h = self._history.get(user_id, [])
        return np.array([r for r, _ in h], dtype=np.int64), [e for _, e in h]


ITEMS = {
    #            0         1        2      3       4         5
    "GENRE": ("categorical", ["comedy", "drama", None, "kids", "Comedy", "drama"]),
    "TAGS": ("multi_categorical", [["a", "b"], [], ["c"], ["b"], ["a"], None]),
    "PRICE": ("numeric", [5.0, 10.0, None, 20.0, 10.5, -1.0]),
}
USERS = {
    "AGE": ("numeric", [30.0, 10.0, None]),
    "GENDER": ("categorical", ["f", None, "m"]),
    "LIKES": ("multi_categorical", [["jazz", "rock"], [], None]),
}
HISTORY = {
    "u0": [(0, "click"), (2, "stream"), (-1, "click"), (3, "buy"), (2, "click")],
    "u1": [(1, "click")],
}
DATA = FakeData(ITEMS, USERS, ["u0", "u1", "u2"], HISTORY)
ALL = [0, 1, 2, 3, 4, 5, -1]


def kept(expression, user="u0", rows=ALL, fv=None, data=DATA):
    plan = compile_filter(expression)
    mask = plan.evaluate(data, user, np.asarray(rows, dtype=np.int64), fv)
    assert mask.dtype == bool and mask.shape == (len(rows),)
    return [r for r, k in zip(rows, mask.tolist()) if k]


# --------------------------------------------------------------------------------------------
# The filter examples of the Personalize documentation (docs/personalize.md)
# --------------------------------------------------------------------------------------------

def test_example_exclude_interactions():
    e = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")'
    assert kept(e, "u0") == [1, 3, 4, 5, -1]
    assert kept(e, "u1") == [0, 2, 3, 4, 5, -1]
    assert kept(e, "nobody") == ALL


def test_example_include_price_placeholder():
    e = "INCLUDE ItemID WHERE Items.PRICE <= $PRICE"
    assert kept(e, fv={"PRICE": "10"}) == [0, 1, 5]
    assert kept(e, fv={"PRICE": '"10"'}) == [0, 1, 5]
    assert kept(e, fv={"PRICE": "-1"}) == [5]


def test_example_include_genre_exclude_all_interactions():
    e = ('INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | '
         'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")')
    assert kept(e, "u0", fv={"GENRE": '"comedy","drama"'}) == [1, 5]
    assert kept(e, "u1", fv={"GENRE": '"comedy","drama"'}) == [0, 5]
    assert kept(e, "nobody", fv={"GENRE": '"kids"'}) == [3]


def test_example_exclude_if_current_user():
    e = "EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE"
    fv = {"GENRE": '"drama"', "AGE": "30"}
    assert kept(e, "u0", fv=fv) == [0, 2, 3, 4, -1]
    assert kept(e, "u1", fv=fv) == ALL  # age 10: condition fails, expression skipped
    assert kept(e, "u2", fv=fv) == ALL  # no age
    assert kept(e, "nobody", fv=fv) == ALL  # unknown user
    assert kept(e, "u0", fv={"GENRE": '"drama"'}) == ALL  # EXCLUDE placeholder missing: skipped


# --------------------------------------------------------------------------------------------
# Syntax errors
# --------------------------------------------------------------------------------------------

def test_syntax_error_message_format():
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter('INCLUDE ItemID WHER Items.GENRE IN ("a")')
    err = info.value
    assert str(err) == "filter expression: expected 'WHERE' at position 15, found 'WHER'"
    assert err.position == 15 and err.expected == "'WHERE'" and err.found == "'WHER'"
    assert isinstance(err, ValueError)


W = "INCLUDE ItemID WHERE "


@pytest.mark.parametrize("expression, position, expected", [
    ('INCLUD ItemID WHERE Items.GENRE IN ("a")', 0, "'INCLUDE' or 'EXCLUDE'"),
    ('   ', 3, "'INCLUDE' or 'EXCLUDE'"),
    ('INCLUDE UserID WHERE Items.GENRE IN ("a")', 8, "'ItemID'"),
    (W + 'Users.AGE IN ("a")', 21, "'Items' or 'Interactions'"),
    (W + 'Items GENRE IN ("a")', 27, "'.'"),
    (W + 'Items.5 IN ("a")', 27, "a field name"),
    (W + 'Items.GENRE "a"', 33, "'IN', 'NOT IN' or a comparison operator"),
    (W + 'Items.GENRE != 3', 33, "'IN', 'NOT IN' or a comparison operator"),
    (W + 'Items.GENRE NOT ("a")', 37, "'IN'"),
    (W + 'Items.GENRE IN "a"', 36, "'('"),
    (W + 'Items.GENRE IN ()', 37, "a quoted string or a $placeholder"),
    (W + 'Items.GENRE IN (a)', 37, "a quoted string or a $placeholder"),
    (W + 'Items.GENRE IN (10)', 37, "a quoted string or a $placeholder"),
    (W + 'Items.GENRE IN ($)', 37, "a quoted string or a $placeholder"),
    (W + 'Items.GENRE IN ("a" "b")', 41, "',' or ')'"),
    (W + 'Items.GENRE IN ("a",)', 41, "a quoted string or a $placeholder"),
    (W + 'Items.GENRE IN ("a"', 40, "',' or ')'"),
    (W + 'Items.GENRE IN ("a)', 40, "'\"' (closing the string opened at position 37)"),
    (W + 'Items.GENRE IN ("a\\q")', 39, "'\\\"' or '\\\\' after a backslash"),
    (W + 'Items.PRICE < "10"', 35, "a number or a $placeholder"),
    (W + 'Items.PRICE < -', 35, "a number or a $placeholder"),
    (W + 'Items.PRICE < 1e', 36, "'AND', 'OR', 'IF', '|' or end of expression"),
    (W + 'Items.GENRE IN ("a") XOR Items.GENRE IN ("b")', 42, "'AND', 'OR', 'IF', '|' or end of expression"),
    (W + 'Items.GENRE IN ("a") AND', 45, "'Items' or 'Interactions'"),
    (W + 'Items.GENRE IN ("a") IF User.AGE > 3', 45, "'CurrentUser'"),
    (W + 'Items.GENRE IN ("a") IF CurrentUser.AGE NOT IN ("3")', 61, "'IN' or a comparison operator"),
    (W + 'Items.GENRE IN ("a") IF CurrentUser.AGE > 3 OR CurrentUser.AGE < 9', 65,
     "'AND', '|' or end of expression"),
    (W + 'Items.GENRE IN ("a") |', 43, "'INCLUDE' or 'EXCLUDE'"),
    (W + 'Items.GENRE IN ("a") || ' + W + 'Items.GENRE IN ("b")', 43, "'INCLUDE' or 'EXCLUDE'"),
    (W + '(Items.GENRE IN ("a"))', 21, "'Items' or 'Interactions'"),
    (W + 'Items.GENRE IN ("a") INCLUDE', 42, "'AND', 'OR', 'IF', '|' or end of expression"),
])
def test_syntax_errors_report_position(expression, position, expected):
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(expression)
    assert info.value.position == position, str(info.value)
    assert info.value.expected == expected
    assert f"at position {position}" in str(info.value)


# --------------------------------------------------------------------------------------------
# Semantic errors
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, fragment", [
    (W + 'Items.GENRE IN ("a") AND Interactions.EVENT_TYPE IN ("click")', "cannot mix"),
    (W + 'Interactions.EVENT_TYPE IN ("click") OR Items.GENRE IN ("a")', "cannot mix"),
    (W + 'Items.GENRE NOT IN ($G)', "placeholder $G cannot be used with NOT IN"),
    (W + 'Interactions.EVENT_TYPE NOT IN ($E)', "cannot be used with NOT IN"),
    (W + 'Interactions.ITEM_ID IN ("1")', "only test EVENT_TYPE"),
    (W + 'Interactions.EVENT_VALUE > 3', "only test EVENT_TYPE"),
    (W + 'Items.GENRE IN ("*")', '"*" can only be used with Interactions.EVENT_TYPE'),
    (W + 'Items.GENRE IN ("a") IF CurrentUser.GENDER IN ("*")', '"*" can only be used'),
    (W + 'Interactions.EVENT_TYPE = 3', "comparison operator '='"),
    (W + 'Interactions.EVENT_TYPE >= $X', "comparison operator '>='"),
    ("", "length must be 1 to 2500"),
    (W + 'Items.GENRE IN (' + ",".join(['"x"'] * 800) + ')', "length must be 1 to 2500"),
])
def test_semantic_errors_are_value_errors(expression, fragment):
    with pytest.raises(ValueError) as info:
        compile_filter(expression)
    assert not isinstance(info.value, FilterSyntaxError)
    assert fragment in str(info.value)


def test_length_limit_is_inclusive():
    head = W + 'Items.GENRE IN ("'
    e = head + "x" * (MAX_EXPRESSION_LENGTH - len(head) - 2) + '")'
    assert len(e) == MAX_EXPRESSION_LENGTH
    compile_filter(e)
    with pytest.raises(ValueError):
        compile_filter(e.replace('"x', '"xx', 1))


def test_non_string_expression_is_a_type_error():
    with pytest.raises(TypeError):
        compile_filter(None)


@pytest.mark.parametrize("expression, fragment", [
    (W + 'Items.COLOR IN ("red")', "Items.COLOR is not an item metadata field"),
    (W + 'Items.GENRE > 3', "Items.GENRE is categorical"),
    (W + 'Items.TAGS <= $X', "Items.TAGS is multi-categorical"),
    (W + 'Items.PRICE IN ("cheap")', '"cheap" is not a number'),
    (W + 'Items.GENRE IN ("a") IF CurrentUser.SHOE IN ("9")', "CurrentUser.SHOE is not a user metadata field"),
    (W + 'Items.GENRE IN ("a") IF CurrentUser.GENDER = 3', "CurrentUser.GENDER is categorical"),
])
def test_schema_errors(expression, fragment):
    plan = compile_filter(expression)
    with pytest.raises(ValueError, match=None) as info:
        plan.validate(DATA)
    assert fragment in str(info.value)
    with pytest.raises(ValueError) as info:
        plan.evaluate(DATA, "u0", np.array([0], dtype=np.int64), {"X": "1"})
    assert fragment in str(info.value)


def test_validate_accepts_a_matching_schema():
    compile_filter(W + 'Items.PRICE > 3 AND items.genre IN ("a") IF CurrentUser.AGE > 1').validate(DATA)


# --------------------------------------------------------------------------------------------
# Placeholders and filter values
# --------------------------------------------------------------------------------------------

def test_missing_include_placeholder_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"\$PRICE"):
        kept("INCLUDE ItemID WHERE Items.PRICE <= $PRICE")
    with pytest.raises(ValueError, match=r"\$AGE"):
        kept(W + 'Items.GENRE IN ("kids") IF CurrentUser.AGE < $AGE', "nobody")
    # placeholder names are case-sensitive
    with pytest.raises(ValueError, match=r"\$Genre"):
        kept(W + "Items.GENRE IN ($Genre)", fv={"GENRE": '"kids"'})


def test_missing_exclude_placeholder_skips_only_that_expression():
    e = ('EXCLUDE ItemID WHERE Items.GENRE IN ($G) | '
         'EXCLUDE ItemID WHERE Items.PRICE > 15')
    assert kept(e) == [0, 1, 2, 4, 5, -1]
    assert kept(e, fv={"G": '"comedy"'}) == [1, 2, 4, 5, -1]
    e2 = W + 'Items.GENRE IN ("drama") | EXCLUDE ItemID WHERE Items.PRICE > $P'
    assert kept(e2) == [1, 5]


def test_numeric_placeholder_forms():
    e = "INCLUDE ItemID WHERE Items.PRICE > $P"
    assert kept(e, fv={"P": "10"}) == kept(e, fv={"P": '"10"'}) == kept(e, fv={"P": " 1e1 "}) == [3, 4]
    assert kept(e, fv={"P": "-0.5e1"}) == [0, 1, 3, 4, 5]
    for bad in ['"10","20"', "ten", '"ten"', "", "nan", '"inf"', "10 20"]:
        with pytest.raises(ValueError, match=r"\$P"):
            kept(e, fv={"P": bad})
    in_list = "INCLUDE ItemID WHERE Items.PRICE IN ($P)"
    assert kept(in_list, fv={"P": '"10", 20'}) == [1, 3]
    assert kept(W + 'Items.PRICE IN ("5", "10.5", $P)', fv={"P": "-1"}) == [0, 4, 5]


def test_malformed_string_filter_values_name_the_placeholder():
    e = "INCLUDE ItemID WHERE Items.GENRE IN ($G)"
    for bad in ["comedy", '"comedy', '"a" "b"', '"a",', "", '"a\\x"', 5]:
        with pytest.raises(ValueError, match=r"\$G"):
            kept(e, fv={"G": bad})
    # a malformed value of an EXCLUDE placeholder is an error too (only a missing one skips)
    with pytest.raises(ValueError, match=r"\$G"):
        kept("EXCLUDE ItemID WHERE Items.GENRE IN ($G)", fv={"G": "comedy"})


def test_unused_filter_values_are_ignored():
    e = 'INCLUDE ItemID WHERE Items.GENRE IN ("kids")'
    assert kept(e, fv={"OTHER": "not even quoted", "G": '"x"'}) == [3]


def test_placeholder_value_with_quotes_and_backslashes():
    data = FakeData({"T": ("categorical", ['say "hi"', "a\\b", "plain"])})
    e = "INCLUDE ItemID WHERE Items.T IN ($V)"
    assert kept(e, rows=[0, 1, 2], fv={"V": '"say \\"hi\\"", "a\\\\b"'}, data=data) == [0, 1]
    assert kept(W + 'Items.T IN ("say \\"hi\\"")', rows=[0, 1, 2], data=data) == [0]


def test_parse_filter_values():
    assert parse_filter_values('"comedy","drama"') == ["comedy", "drama"]
    assert parse_filter_values(' "a" ,  "b c"  ') == ["a", "b c"]
    assert parse_filter_values('"x\\"y","\\\\"') == ['x"y', "\\"]
    assert parse_filter_values('""') == [""]
    assert parse_filter_values('"a,b"') == ["a,b"]
    for bad in ["", "  ", "comedy", '"a', '"a",', ',"a"', '"a" "b"', '"a"x', "10", '"\\n"']:
        with pytest.raises(ValueError):
            parse_filter_values(bad)


# --------------------------------------------------------------------------------------------
# Semantics
# --------------------------------------------------------------------------------------------

def test_event_types_are_case_insensitive_and_star_matches_any():
    assert kept(W + 'Interactions.EVENT_TYPE IN ("CLICK")') == [0, 2]
    assert kept(W + 'Interactions.EVENT_TYPE IN ("Stream", "bUY")') == [2, 3]
    assert kept(W + 'Interactions.EVENT_TYPE IN ($E)', fv={"E": '"Buy"'}) == [3]
    assert kept(W + 'Interactions.EVENT_TYPE IN ("*")') == [0, 2, 3]
    assert kept(W + 'Interactions.EVENT_TYPE IN ($E)', fv={"E": '"*"'}) == [0, 2, 3]
    assert kept(W + 'Interactions.EVENT_TYPE IN ("view")') == []


def test_interactions_not_in_means_interacted_with_another_event_type():
    assert kept(W + 'Interactions.EVENT_TYPE NOT IN ("click")') == [2, 3]
    assert kept(W + 'Interactions.EVENT_TYPE NOT IN ("click", "stream")') == [3]
    assert kept(W + 'Interactions.EVENT_TYPE NOT IN ("*")') == []
    assert kept(W + 'Interactions.EVENT_TYPE NOT IN ("view")', "nobody") == []
    assert kept('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ("CLICK")') == [0, 1, 4, 5, -1]


def test_interactions_with_unknown_item_rows_never_match():
    data = FakeData(history={"u": [(-1, "click")]})
    assert kept(W + 'Interactions.EVENT_TYPE IN ("click")', "u", rows=[-1, 0], data=data) == []
    assert kept('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', "u", rows=[-1, 0], data=data) == [-1, 0]


def test_interactions_in_any_order_of_event_types():
    hist = {"u": [(0, "click"), (1, "buy"), (2, "click"), (3, "view"), (4, "buy")]}
    data = FakeData(history=hist)
    rows = [0, 1, 2, 3, 4, 5]
    assert kept(W + 'Interactions.EVENT_TYPE IN ("click")', "u", rows, data=data) == [0, 2]
    assert kept(W + 'Interactions.EVENT_TYPE IN ("click", "view")', "u", rows, data=data) == [0, 2, 3]
    assert kept(W + 'Interactions.EVENT_TYPE NOT IN ("buy")', "u", rows, data=data) == [0, 2, 3]
    hist_tuple = FakeData(history={"u": [(0, "click"), (1, "buy")]})
    hist_tuple.recent_interactions = lambda u: (np.array([0, 1]), ("click", "buy"))
    assert kept(W + 'Interactions.EVENT_TYPE IN ("buy")', "u", rows, data=hist_tuple) == [1]


def test_categorical_in_is_exact_and_case_sensitive():
    assert kept(W + 'Items.GENRE IN ("comedy")') == [0]
    assert kept(W + 'Items.GENRE IN ("Comedy", "drama")') == [1, 4, 5]
    assert kept(W + 'Items.GENRE IN ("comed")') == []


def test_not_in_includes_missing_values_but_not_unknown_items():
    assert kept(W + 'Items.GENRE NOT IN ("drama", "kids")') == [0, 2, 4]
    assert kept(W + 'Items.TAGS NOT IN ("a", "c")') == [1, 3, 5]
    assert kept(W + 'Items.PRICE NOT IN ("10", "20")') == [0, 2, 4, 5]
    assert kept('EXCLUDE ItemID WHERE Items.GENRE NOT IN ("drama")') == [1, 5, -1]


def test_multi_valued_any_match():
    assert kept(W + 'Items.TAGS IN ("b")') == [0, 3]
    assert kept(W + 'Items.TAGS IN ("a", "c")') == [0, 2, 4]
    assert kept(W + "Items.TAGS IN ($T)", fv={"T": '"c","b"'}) == [0, 2, 3]
    assert kept(W + "Items.TAGS IN ($T)", fv={"T": '"zzz"'}) == []


def test_numeric_comparisons_and_nan():
    assert kept(W + "Items.PRICE = 10") == [1]
    assert kept(W + "Items.PRICE < 10") == [0, 5]
    assert kept(W + "Items.PRICE >= 10") == [1, 3, 4]
    assert kept(W + "Items.PRICE > -1.5E0") == [0, 1, 3, 4, 5]
    assert kept(W + 'Items.PRICE IN ("10.0", "2e1")') == [1, 3]
    assert kept("EXCLUDE ItemID WHERE Items.PRICE < 100") == [2, -1]


def test_unknown_items_dropped_by_include_kept_by_exclude():
    assert kept(W + 'Items.GENRE NOT IN ("zzz")', rows=[-1, 0, -1]) == [0]
    assert kept('EXCLUDE ItemID WHERE Items.GENRE NOT IN ("zzz")', rows=[-1, 0, -1]) == [-1, -1]
    assert kept(W + 'Interactions.EVENT_TYPE NOT IN ("zzz")', rows=[-1]) == []


def test_and_binds_tighter_than_or():
    # GENRE = comedy OR (TAGS has b AND PRICE > 10)   ->  0 (comedy), 3 (b, 20)
    e = W + 'Items.GENRE IN ("comedy") OR Items.TAGS IN ("b") AND Items.PRICE > 10'
    assert kept(e) == [0, 3]
    # (TAGS has b AND PRICE > 10) OR GENRE = comedy  -> same
    e2 = W + 'Items.TAGS IN ("b") AND Items.PRICE > 10 OR Items.GENRE IN ("comedy")'
    assert kept(e2) == [0, 3]
    # with placeholders in the mix (not folded into constant masks)
    e3 = W + 'Items.GENRE IN ($G) OR Items.TAGS IN ($T) AND Items.PRICE > $P'
    assert kept(e3, fv={"G": '"comedy"', "T": '"b"', "P": "10"}) == [0, 3]
    e4 = W + 'Interactions.EVENT_TYPE IN ("buy") OR Interactions.EVENT_TYPE IN ("click") AND Interactions.EVENT_TYPE IN ("stream")'
    assert kept(e4) == [2, 3]


def test_pipe_combination():
    inc_a = W + 'Items.GENRE IN ("comedy")'
    inc_b = W + 'Items.TAGS IN ("c")'
    exc = 'EXCLUDE ItemID WHERE Items.PRICE < 6'
    exc2 = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'
    assert kept(f"{inc_a} | {inc_b}") == [0, 2]
    assert kept(f"{inc_a} | {inc_b} | {exc}") == [2]
    assert kept(f"{exc} | {exc2}") == [1, 3, 4, -1]
    assert kept(f"{exc}|{inc_b}|{exc2}|{inc_a}") == []


def test_if_clause_skips_expressions():
    kids = W + 'Items.GENRE IN ("kids") IF CurrentUser.AGE < 13'
    assert kept(kids, "u1") == [3]  # a child
    assert kept(kids, "u0") == ALL  # an adult: the only INCLUDE is skipped -> everything
    assert kept(kids, "u2") == ALL  # no age
    assert kept(kids, "nobody") == ALL  # unknown user
    two = kids + ' | ' + W + 'Items.GENRE IN ("drama") IF CurrentUser.GENDER IN ("f")'
    assert kept(two, "u0") == [1, 5]  # second INCLUDE applies, first skipped
    assert kept(two, "u1") == [3]
    assert kept(two, "u2") == ALL
    with_exclude = kids + ' | EXCLUDE ItemID WHERE Items.PRICE > 15'
    assert kept(with_exclude, "u0") == [0, 1, 2, 4, 5, -1]
    always = W + 'Items.GENRE IN ("comedy")'
    assert kept(kids + " | " + always, "u0") == [0]  # an unconditional INCLUDE still applies


def test_if_clause_conditions():
    base = W + 'Items.GENRE IN ("kids") IF '
    assert kept(base + 'CurrentUser.AGE > 20 AND CurrentUser.GENDER IN ("f", "x")', "u0") == [3]
    assert kept(base + 'CurrentUser.AGE > 20 AND CurrentUser.GENDER IN ("m")', "u0") == ALL
    assert kept(base + 'CurrentUser.LIKES IN ("rock")', "u0") == [3]
    assert kept(base + 'CurrentUser.LIKES IN ("pop")', "u0") == ALL
    assert kept(base + 'CurrentUser.LIKES IN ("rock")', "u1") == ALL
    assert kept(base + 'CurrentUser.AGE IN ("30", $A)', "u1", fv={"A": '"10"'}) == [3]
    assert kept(base + 'CurrentUser.AGE >= $A', "u0", fv={"A": "30"}) == [3]
    assert kept(base + 'CurrentUser.GENDER IN ($G)', "u2", fv={"G": '"m"'}) == [3]


def test_keywords_and_names_are_case_insensitive():
    e = 'include itemid where items.genre in ("kids") or ITEMS.Price > 15 if currentuser.age > 1'
    assert kept(e, "u0") == [3]
    e2 = 'exclude ItemId WHERE interactions.event_type not in ("click")'
    assert kept(e2) == [0, 1, 4, 5, -1]


def test_whitespace_is_flexible():
    e = 'INCLUDE\tItemID\nWHERE  Items . GENRE\r\nIN(  "kids"  ,"comedy")|EXCLUDE ItemID WHERE Items.PRICE<=5'
    assert kept(e) == [3]


def test_empty_candidates():
    assert kept(W + 'Items.GENRE IN ("kids")', rows=[]) == []
    assert kept(W + 'Interactions.EVENT_TYPE IN ("*")', rows=[]) == []


def test_plan_attributes_and_repr():
    plan = compile_filter('include ItemID where Items.genre IN ($G, "x\\"y") | '
                          'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($E) IF CurrentUser.AGE > $A')
    assert plan.placeholders == {"G", "E", "A"}
    assert plan.required_placeholders == {"G"}
    assert plan.datasets == {"ITEMS", "INTERACTIONS", "USERS"}
    assert plan.expression.startswith("include ItemID")
    assert str(plan) == ('INCLUDE ItemID WHERE Items.GENRE IN ($G, "x\\"y") | EXCLUDE ItemID WHERE '
                         'Interactions.EVENT_TYPE IN ($E) IF CurrentUser.AGE > $A')
    assert repr(plan).startswith("FilterPlan('INCLUDE ItemID WHERE Items.GENRE")
    assert "placeholders=['A', 'E', 'G']" in repr(plan)
    assert isinstance(plan, FilterPlan)
    assert str(compile_filter(str(plan))) == str(plan)
    with pytest.raises(AttributeError):
        plan.expression = "x"
    assert compile_filter(W + 'Items.GENRE IN ("a")').datasets == {"ITEMS"}


def test_plan_rebinds_when_columns_change():
    plan = compile_filter(W + 'Items.GENRE IN ("a")')
    rows = np.array([0, 1], dtype=np.int64)
    for _ in range(3):
        for values, expected in ((["a", "b"], [True, False]), (["b", "a"], [False, True])):
            data = FakeData({"GENRE": ("categorical", values)})
            assert plan.evaluate(data, "u", rows).tolist() == expected
            del data
            gc.collect()


def test_item_rows_accepts_lists_and_checks_shape():
    plan = compile_filter(W + 'Items.GENRE IN ("kids")')
    assert plan.evaluate(DATA, "u0", [3, 0]).tolist() == [True, False]
    with pytest.raises(ValueError):
        plan.evaluate(DATA, "u0", np.zeros((2, 2), dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Property test: random expressions against a slow reference evaluator
# --------------------------------------------------------------------------------------------

STRS = ["comedy", "drama", "Comedy", "kids", 'q"uote', "back\\slash", "a", "b", "", "x y"]
NUMS = ["0", "1", "-1", "2.5", "10", "1e1", "-0.5", "3", "10.0"]
NUM_VALUES = [0.0, 1.0, -1.0, 2.5, 10.0, 3.0, -0.5, None]
EVENTS = ["click", "stream", "buy", "view"]
EVENT_VALUES = ["click", "Click", "STREAM", "buy", "view", "other", "*"]
CMPS = ["=", "<", "<=", ">", ">="]
CMP_FUNCS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
PLACEHOLDER_KINDS = {"S1": "str", "S2": "str", "N1": "num", "N2": "num", "E1": "event"}


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


CASINGS = [str, str.upper, str.lower, str.swapcase, lambda w: "".join(
    c.upper() if i % 2 else c.lower() for i, c in enumerate(w))]


@st.composite
def item_condition(draw):
    field = draw(st.sampled_from(["GENRE", "TAGS", "PRICE"]))
    if field == "PRICE":
        if draw(st.booleans()):
            op = draw(st.sampled_from(CMPS))
            operand = draw(st.one_of(st.sampled_from(NUMS).map(lambda x: ("n", x)),
                                     st.sampled_from(["N1", "N2"]).map(lambda p: ("p", p))))
            return ("item", field, op, [operand])
        op = draw(st.sampled_from(["IN", "NOT IN"]))
        value = st.sampled_from(NUMS).map(lambda x: ("s", x))
        if op == "IN":
            value = st.one_of(value, st.sampled_from(["N1", "N2"]).map(lambda p: ("p", p)))
        return ("item", field, op, draw(st.lists(value, min_size=1, max_size=3)))
    op = draw(st.sampled_from(["IN", "NOT IN"]))
    value = st.sampled_from(STRS).map(lambda x: ("s", x))
    if op == "IN":
        value = st.one_of(value, st.sampled_from(["S1", "S2"]).map(lambda p: ("p", p)))
    return ("item", field, op, draw(st.lists(value, min_size=1, max_size=3)))


@st.composite
def interaction_condition(draw):
    op = draw(st.sampled_from(["IN", "NOT IN"]))
    value = st.sampled_from(EVENT_VALUES).map(lambda x: ("s", x))
    if op == "IN":
        value = st.one_of(value, st.just(("p", "E1")))
    return ("inter", "EVENT_TYPE", op, draw(st.lists(value, min_size=1, max_size=3)))


@st.composite
def user_condition(draw):
    field = draw(st.sampled_from(["AGE", "GENDER", "LIKES"]))
    if field == "AGE" and draw(st.booleans()):
        op = draw(st.sampled_from(CMPS))
        operand = draw(st.one_of(st.sampled_from(NUMS).map(lambda x: ("n", x)), st.just(("p", "N1"))))
        return ("user", field, op, [operand])
    if field == "AGE":
        value = st.one_of(st.sampled_from(NUMS).map(lambda x: ("s", x)), st.just(("p", "N2")))
    else:
        value = st.one_of(st.sampled_from(["f", "m", "jazz", "rock", "x"]).map(lambda x: ("s", x)),
                          st.just(("p", "S1")))
    return ("user", field, "IN", draw(st.lists(value, min_size=1, max_size=2)))


@st.composite
def expression(draw):
    action = draw(st.sampled_from(["INCLUDE", "EXCLUDE"]))
    cond = item_condition() if draw(st.booleans()) else interaction_condition()
    conds = draw(st.lists(cond, min_size=1, max_size=3))
    connectors = draw(st.lists(st.sampled_from(["AND", "OR"]), min_size=len(conds) - 1,
                               max_size=len(conds) - 1))
    ifs = draw(st.lists(user_condition(), max_size=2)) if draw(st.integers(0, 3)) == 0 else []
    return {"action": action, "conds": conds, "connectors": connectors, "ifs": ifs}


@st.composite
def render(draw, exprs):
    def kw(word):
        return draw(st.sampled_from(CASINGS))(word)

    def sp():
        return draw(st.sampled_from([" ", "  ", "\n", "\t "]))

    def value(v):
        kind, x = v
        if kind == "p":
            return "$" + x
        if kind == "n":
            return x
        return quote(x)

    def cond(c):
        ds, field, op, values = c
        name = {"item": "Items", "inter": "Interactions", "user": "CurrentUser"}[ds]
        head = kw(name) + "." + kw(field)
        if op in ("IN", "NOT IN"):
            ops = kw("NOT") + sp() + kw("IN") if op == "NOT IN" else kw("IN")
            return head + sp() + ops + sp() + "(" + ", ".join(value(v) for v in values) + ")"
        return head + sp() + op + sp() + value(values[0])

    parts = []
    for e in exprs:
        text = kw(e["action"]) + sp() + kw("ItemID") + sp() + kw("WHERE") + sp() + cond(e["conds"][0])
        for conn, c in zip(e["connectors"], e["conds"][1:]):
            text += sp() + kw(conn) + sp() + cond(c)
        if e["ifs"]:
            text += sp() + kw("IF") + sp() + (sp() + kw("AND") + sp()).join(cond(c) for c in e["ifs"])
        parts.append(text)
    return (sp() + "|" + sp()).join(parts)


def placeholders_of(e):
    return {v[1] for c in e["conds"] + e["ifs"] for v in c[3] if v[0] == "p"}


@st.composite
def filter_value(draw, kind):
    """(decoded values, filterValues string)."""
    if kind == "num":
        x = draw(st.sampled_from(NUMS))
        return [x], draw(st.sampled_from([x, quote(x), " " + x + " "]))
    pool = STRS if kind == "str" else EVENT_VALUES
    vals = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    sep = draw(st.sampled_from([",", ", ", " , "]))
    return vals, sep.join(quote(v) for v in vals)


@st.composite
def scenario(draw):
    n = draw(st.integers(0, 7))
    common = STRS[:5] + STRS[:5] + STRS  # data values overlap the listed values often
    genre = draw(st.lists(st.sampled_from(common + [None]), min_size=n, max_size=n))
    tags = draw(st.lists(st.lists(st.sampled_from(common), max_size=3, unique=True), min_size=n, max_size=n))
    price = draw(st.lists(st.sampled_from(NUM_VALUES), min_size=n, max_size=n))
    users = {
        "AGE": draw(st.lists(st.sampled_from(NUM_VALUES + [30.0]), min_size=3, max_size=3)),
        "GENDER": draw(st.lists(st.sampled_from(["f", "m", None]), min_size=3, max_size=3)),
        "LIKES": draw(st.lists(st.lists(st.sampled_from(["jazz", "rock", "x"]), max_size=2, unique=True),
                               min_size=3, max_size=3)),
    }
    row = st.integers(-1, n - 1)
    history = {u: draw(st.lists(st.tuples(row, st.sampled_from(EVENTS)), max_size=8)) for u in ("u0", "u1")}
    candidates = draw(st.lists(row, min_size=1, max_size=10))
    user = draw(st.sampled_from(["u0", "u1", "u2", "nobody"]))
    exprs = draw(st.lists(expression(), min_size=1, max_size=3))
    text = draw(render(exprs))
    used = set().union(*(placeholders_of(e) for e in exprs))
    fv_decoded, fv = {}, {}
    for name in sorted(used):
        if draw(st.integers(0, 4)) > 0:
            fv_decoded[name], fv[name] = draw(filter_value(PLACEHOLDER_KINDS[name]))
    if draw(st.booleans()):
        fv["UNUSED"] = draw(st.text(max_size=5))
    spec = {"genre": genre, "tags": tags, "price": price, "users": users, "history": history}
    return spec, exprs, text, user, candidates, fv_decoded, fv


def reference_keep(spec, exprs, user, candidates, values):
    """Obviously-correct evaluator: per-candidate loops over Python lists and sets."""
    for e in exprs:
        if e["action"] == "INCLUDE" and any(p not in values for p in placeholders_of(e)):
            return "error"
    user_index = {"u0": 0, "u1": 1, "u2": 2}.get(user)
    history = spec["history"].get(user, [])

    def listed(vs):
        out = []
        for kind, x in vs:
            out.extend(values[x] if kind == "p" else [x])
        return out

    def item_holds(c, r):
        if r < 0:
            return False
        _, field, op, vs = c
        if field == "PRICE":
            v = spec["price"][r]
            if op not in ("IN", "NOT IN"):
                return v is not None and CMP_FUNCS[op](v, float(listed(vs)[0]))
            inside = v is not None and any(v == float(x) for x in listed(vs))
        elif field == "GENRE":
            v = spec["genre"][r]
            inside = v is not None and v in listed(vs)
        else:
            inside = any(t in listed(vs) for t in spec["tags"][r])
        return inside if op == "IN" else not inside

    def interaction_holds(c, r):
        if r < 0:
            return False
        _, _, op, vs = c
        wanted = [x.lower() for x in listed(vs)]
        star = "*" in wanted
        for hr, ht in history:
            if hr == r:
                if op == "IN" and (star or ht in wanted):
                    return True
                if op == "NOT IN" and not star and ht not in wanted:
                    return True
        return False

    def user_holds(c):
        if user_index is None:
            return False
        _, field, op, vs = c
        v = spec["users"][field][user_index]
        if field == "AGE":
            if v is None:
                return False
            if op != "IN":
                return CMP_FUNCS[op](v, float(listed(vs)[0]))
            return any(v == float(x) for x in listed(vs))
        if field == "GENDER":
            return v is not None and v in listed(vs)
        return any(x in listed(vs) for x in v)

    include_sets, exclude_sets = [], []
    for e in exprs:
        if any(p not in values for p in placeholders_of(e)):
            continue  # an EXCLUDE with a missing value (INCLUDE returned "error" above)
        if e["ifs"] and not all(user_holds(c) for c in e["ifs"]):
            continue
        matched = set()
        for i, r in enumerate(candidates):
            bits = []
            for c in e["conds"]:
                holds = item_holds(c, r) if c[0] == "item" else interaction_holds(c, r)
                bits.append(str(holds))
            words = [bits[0]]
            for conn, b in zip(e["connectors"], bits[1:]):
                words += [conn.lower(), b]
            if eval(" ".join(words)):  # Python's own precedence: "and" binds tighter than "or"
                matched.add(i)
        (include_sets if e["action"] == "INCLUDE" else exclude_sets).append(matched)
    keep = set(range(len(candidates)))
    if include_sets:
        keep = set().union(*include_sets)
    for s in exclude_sets:
        keep -= s
    return [i in keep for i in range(len(candidates))]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_random_expressions_match_reference(case):
    spec, exprs, text, user, candidates, fv_decoded, fv = case
    n = len(spec["genre"])
    data = FakeData(
        {"GENRE": ("categorical", spec["genre"]), "TAGS": ("multi_categorical", spec["tags"]),
         "PRICE": ("numeric", spec["price"])},
        {k: ({"AGE": "numeric", "GENDER": "categorical", "LIKES": "multi_categorical"}[k], v)
         for k, v in spec["users"].items()},
        ["u0", "u1", "u2"], spec["history"])
    assert all(-1 <= r < n for r in candidates)
    plan = compile_filter(text)
    assert str(compile_filter(str(plan))) == str(plan)
    expected = reference_keep(spec, exprs, user, candidates, fv_decoded)
    rows = np.asarray(candidates, dtype=np.int64)
    if expected == "error":
        with pytest.raises(ValueError, match=r"\$"):
            plan.evaluate(data, user, rows, fv)
        return
    for _ in range(3):  # later runs go through the plan's caches (whole-column masks)
        got = plan.evaluate(data, user, rows, fv)
        assert got.tolist() == expected, text
    got = plan.evaluate(data, user, rows[::-1].copy(), fv)  # other candidates, cached masks
    assert got.tolist() == expected[::-1], text


# --------------------------------------------------------------------------------------------
# Property tests: garbage never escapes as anything but ValueError
# --------------------------------------------------------------------------------------------

TOKENS = ["INCLUDE", "EXCLUDE", "include", "ItemID", "WHERE", "where", "Items", "Interactions",
          "CurrentUser", ".", "GENRE", "EVENT_TYPE", "PRICE", "IN", "NOT", "AND", "OR", "IF", "(",
          ")", ",", "|", "=", "<", "<=", ">", ">=", '"a"', '"*"', '"x\\"y"', '"', "\\", "$G", "$",
          "10", "-2.5e3", "-", "1e", "!", "#", "\u00e9", "\x00"]


def _compile_or_value_error(text):
    try:
        plan = compile_filter(text)
    except FilterSyntaxError as exc:
        assert 0 <= exc.position <= len(text)
        assert f"at position {exc.position}" in str(exc)
        return None
    except ValueError:
        return None
    assert isinstance(plan, FilterPlan)
    return plan


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_random_text_only_raises_value_errors(text):
    _compile_or_value_error(text)
    _compile_or_value_error("INCLUDE ItemID WHERE " + text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=25),
       st.lists(st.sampled_from(["", " ", "\n"]), min_size=25, max_size=25))
def test_token_soup_only_raises_value_errors(tokens, seps):
    text = "".join(t + s for t, s in zip(tokens, seps))
    plan = _compile_or_value_error(text)
    if plan is not None:
        try:
            plan.evaluate(DATA, "u0", np.array(ALL, dtype=np.int64), {"G": '"a"'})
        except ValueError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_garbage_filter_values_only_raise_value_errors(raw):
    plans = [compile_filter(W + "Items.GENRE IN ($G)"), compile_filter(W + "Items.PRICE < $G"),
             compile_filter(W + "Items.TAGS IN ($G)"), compile_filter(W + "Interactions.EVENT_TYPE IN ($G)"),
             compile_filter(W + 'Items.GENRE IN ("a") IF CurrentUser.AGE = $G')]
    for plan in plans:
        try:
            mask = plan.evaluate(DATA, "u0", np.array(ALL, dtype=np.int64), {"G": raw})
        except ValueError as exc:
            assert "$G" in str(exc)
        else:
            assert mask.dtype == bool
    try:
        assert all(isinstance(v, str) for v in parse_filter_values(raw))
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=8), min_size=1, max_size=4), st.sampled_from([",", ", ", " ,\t"]))
def test_parse_filter_values_round_trip(values, sep):
    assert parse_filter_values(sep.join(quote(v) for v in values)) == values


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=6), min_size=1, max_size=3))
def test_any_string_value_round_trips_through_the_parser(values):
    text = W + "Items.GENRE IN (" + ", ".join(quote(v) for v in values) + ")"
    if "*" in values:
        with pytest.raises(ValueError):
            compile_filter(text)
        return
    plan = compile_filter(text)
    assert [v.text for v in plan.expressions[0].groups[0][0].values] == values


def test_campaign_caches_never_serve_stale_results():
    c = rankcore.Campaign(synthetic(n_users=20, n_items=300, dim=8, seed=1))
    seen = c.create_filter("seen", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("view")')
    ids = [str(i) for i in range(50)]
    for _ in range(3):  # warm the per-user history cache
        assert "7" in c.rank("new-user", ids, filter=seen).item_ids
    c.put_events("new-user", [{"itemId": "7", "eventType": "view", "sentAt": 1.0}])
    assert "7" not in c.rank("new-user", ids, filter=seen).item_ids
    genre = c.create_filter("genre", "INCLUDE ItemID WHERE Items.GENRE IN ($G)")
    results = {}
    for _ in range(3):  # first over the candidates, then through the cached whole-column masks
        for g in ("Comedy", "Drama", "Action", "Thriller", "Romance", "Horror"):
            got = c.rank("1", ids, filter=genre, filter_values={"G": f'"{g}"'}).item_ids
            assert results.setdefault(g, got) == got


@given(st.lists(st.integers(0, 60), max_size=40), st.lists(st.integers(-1, 70), max_size=80))
@settings(max_examples=300, deadline=None)
def test_membership_native_and_python_agree(values, rows):
    """``InteractionHistory.contains`` (native ``rows_in`` when built) and its pure-Python twin
    ``rows_in_py`` give np.isin's answer."""
    sel = np.unique(np.array(values, dtype=np.int64))
    r = np.array(rows, dtype=np.int64)
    want = np.isin(r, sel)
    np.testing.assert_array_equal(InteractionHistory.contains(sel, r), want)
    np.testing.assert_array_equal(rows_in_py(sel, r), want)
    if native.HAS_NATIVE:
        rows_in = native.function("rows_in")
        extreme = np.array([np.iinfo(np.int64).min, -5, 2**62], dtype=np.int64)
        np.testing.assert_array_equal(rows_in(extreme[:1], np.append(r, extreme)),
                                      np.append(np.zeros(len(r), bool), [True, False, False]))
        with pytest.raises(TypeError):
            rows_in(sel.astype(np.int32), r)


def test_filter_values_are_bounded_in_every_surface():
    """Issue 11, item 8: a huge value is refused before it is parsed, in the library too."""
    from rankcore.filters.values import MAX_VALUE_LENGTH

    ok = ",".join(['"a"'] * (MAX_VALUE_LENGTH // 4))
    assert parse_filter_values(ok) == ["a"] * (MAX_VALUE_LENGTH // 4)
    huge = ",".join(['"a"'] * 700_000)
    with pytest.raises(ValueError, match="at most 1000 characters"):
        parse_filter_values(huge)
    with pytest.raises(ValueError, match=r"\$G.*at most 1000"):
        kept("INCLUDE ItemID WHERE Items.GENRE IN ($G)", fv={"G": huge})
