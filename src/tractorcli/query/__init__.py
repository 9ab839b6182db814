"""tq search clauses: lexer and parser -> syntax tree -> parameterized SQL.

Modules: `lexer` (tokens with columns), `parser` (tree for one entity, search
aliases expanded), `nodes` (the tree), `attributes` (the fixed table of
entities, attributes, attribute aliases and joins), `aliases` (search
aliases), `timeparse` (time values, durations, sizes), `sql` (type checks and
SQL), `shorthand` (``tq jobs 12 13``).  No click, no rich, no database
connection: the caller executes what `compile_clause` / `build_select`
return.

    >>> q = compile_clause("jobs", "owner=ann and error", user="ann")
    >>> q.where_sql
    '((job.owner = %(p1)s::text) AND (job.numerror > %(p2)s::int4))'
"""

from __future__ import annotations

from .aliases import SEARCH_ALIASES, aliases_for, default_user
from .attributes import ENTITIES, Attribute, Entity, attribute_names, entity, resolve
from .errors import ClauseError
from .lexer import Token, lex
from .nodes import render
from .parser import MAX_DEPTH, parse
from .shorthand import clause_from_words, positional_clause
from .sql import (Column, ColumnError, CompiledQuery, SelectQuery, build_select, compile_clause, compile_tree,
                  database_error, resolve_column)
from .timeparse import parse_duration, parse_size, parse_time

__all__ = [
    "ClauseError", "ColumnError", "CompiledQuery", "SelectQuery", "Column", "Attribute", "Entity", "Token",
    "ENTITIES", "SEARCH_ALIASES", "MAX_DEPTH",
    "compile_clause", "compile_tree", "build_select", "resolve_column", "database_error", "parse", "lex", "render",
    "entity", "resolve", "attribute_names", "aliases_for", "default_user",
    "positional_clause", "clause_from_words", "parse_time", "parse_duration", "parse_size",
]
