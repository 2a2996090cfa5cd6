"""Personalize filter expressions: compile once, evaluate vectorised over candidate items.

``compile_filter(text)`` parses an Amazon Personalize filter expression into an immutable
:class:`FilterPlan`; ``plan.evaluate(data, user_id, item_rows, filter_values)`` returns a boolean
mask over the candidates (True = keep). Removing the items and renormalising the scores is the
caller's job. The grammar, the semantics and the decisions taken where Personalize's
documentation is silent are written down in docs/personalize.md.

Modules: ``syntax`` (tokenizer, parser, syntax tree), ``values`` (filterValues), ``items`` (Items
conditions as masks), ``history`` (recent interactions, Interactions conditions), ``plans``
(binding, validation, evaluation).
"""
from __future__ import annotations

from ..errors import FilterSyntaxError
from .history import InteractionHistory
from .plans import FilterPlan, compile_filter
from .syntax import MAX_EXPRESSION_LENGTH, Condition, Expression, Value
from .values import parse_filter_values

__all__ = [
    "FilterSyntaxError",
    "FilterPlan",
    "Value",
    "Condition",
    "Expression",
    "compile_filter",
    "parse_filter_values",
    "InteractionHistory",
    "MAX_EXPRESSION_LENGTH",
]
