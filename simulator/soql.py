"""A SOQL subset: tokenizer and recursive-descent parser producing a small syntax tree.

Supported: ``SELECT`` fields (with relationship dot-paths and parent-to-child sub-queries
such as ``(SELECT LastName FROM Contacts)``), aggregates (``COUNT``, ``COUNT_DISTINCT``,
``SUM``, ``AVG``, ``MIN``, ``MAX``, with ``GROUP BY``) or ``COUNT()``, ``FROM``,
``WHERE`` with ``AND``/``OR``/``NOT`` and parentheses, ``= != <> < <= > >= IN NOT IN LIKE``,
string/number/boolean/null/date/date-time literals and the date literals ``TODAY``,
``YESTERDAY``, ``TOMORROW``, ``THIS/LAST/NEXT_WEEK|MONTH|YEAR``, ``LAST_N_DAYS:n``,
``NEXT_N_DAYS:n``, ``N_DAYS_AGO:n``, ``LAST_90_DAYS``, ``NEXT_90_DAYS``, ``ORDER BY`` (ASC/DESC,
NULLS FIRST/LAST), ``LIMIT`` and ``OFFSET``. Errors are ``MALFORMED_QUERY``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from simulator.errors import SalesforceError

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<datetime>\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:?\d{2}))"
    r"|(?P<date>\d{4}-\d{2}-\d{2})|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)|(?P<word>[A-Za-z_][\w.]*(?::\d+)?))"
)
_KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc",
             "desc", "nulls", "first", "last", "limit", "offset", "null", "true", "false", "count",
             "includes", "excludes", "group"}  # fmt: skip
AGGREGATES = ("count", "count_distinct", "sum", "avg", "min", "max")


@dataclass(frozen=True)
class DateRange:
    """A date literal: the half-open interval ``[start, end)`` of days it covers."""

    start: date
    end: date


@dataclass(frozen=True)
class Comparison:
    """``path op value`` (``value`` is a list for IN / NOT IN)."""

    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True)
class BoolOp:
    """``AND`` / ``OR`` over operands, or ``NOT`` over one."""

    op: str
    operands: tuple[Any, ...]


@dataclass(frozen=True)
class Aggregate:
    """``SUM(Amount) total``: function, field path and the result's key."""

    function: str
    path: tuple[str, ...]
    alias: str


@dataclass
class Query:
    """A parsed SELECT statement."""

    sobject: str
    fields: list[tuple[str, ...]] = field(default_factory=list)
    count_only: bool = False
    where: Any = None
    order_by: list[tuple[tuple[str, ...], bool, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    subqueries: list[Query] = field(default_factory=list)
    aggregates: list[Aggregate] = field(default_factory=list)
    group_by: list[tuple[str, ...]] = field(default_factory=list)


def malformed(message: str) -> SalesforceError:
    """The error Salesforce returns for a query it cannot parse."""
    return SalesforceError("MALFORMED_QUERY", message)


def tokenize(text: str) -> list[tuple[str, str]]:
    """``(kind, text)`` tokens; words that are keywords get kind ``kw`` and lower case."""
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise malformed(f"unexpected token: '{text[position : position + 20].split()[0]}'")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _month_start(day: date, shift: int = 0) -> date:
    months = day.year * 12 + day.month - 1 + shift
    return date(months // 12, months % 12 + 1, 1)


def date_literal(word: str, today: date | None = None) -> DateRange | None:
    """The range of a named date literal (``TODAY``, ``LAST_N_DAYS:7``...), else ``None``."""
    today = today or datetime.now(UTC).date()
    name, _, amount = word.upper().partition(":")
    one = timedelta(days=1)
    week = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday
    year = date(today.year, 1, 1)
    fixed = {
        "TODAY": (today, today + one),
        "YESTERDAY": (today - one, today),
        "TOMORROW": (today + one, today + 2 * one),
        "THIS_WEEK": (week, week + 7 * one),
        "LAST_WEEK": (week - 7 * one, week),
        "NEXT_WEEK": (week + 7 * one, week + 14 * one),
        "THIS_MONTH": (_month_start(today), _month_start(today, 1)),
        "LAST_MONTH": (_month_start(today, -1), _month_start(today)),
        "NEXT_MONTH": (_month_start(today, 1), _month_start(today, 2)),
        "THIS_YEAR": (year, date(today.year + 1, 1, 1)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), year),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        "LAST_90_DAYS": (today - 90 * one, today + one),
        "NEXT_90_DAYS": (today + one, today + 91 * one),
    }
    if name in fixed and not amount:
        return DateRange(*fixed[name])
    if not amount.isdigit():
        return None
    days = int(amount)
    if name == "LAST_N_DAYS":
        return DateRange(today - days * one, today + one)
    if name == "NEXT_N_DAYS":
        return DateRange(today + one, today + (days + 1) * one)
    if name == "N_DAYS_AGO":
        return DateRange(today - days * one, today - (days - 1) * one)
    return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end":
            raise malformed("unexpected end of query")
        self.index += 1
        return token

    def accept(self, *keywords: str) -> bool:
        if self.peek() == ("kw", keywords[0]) and all(
            self.peek(i) == ("kw", k) for i, k in enumerate(keywords)
        ):
            self.index += len(keywords)
            return True
        return False

    def expect(self, *keywords: str) -> None:
        if not self.accept(*keywords):
            raise malformed(f"expecting '{' '.join(keywords).upper()}', found '{self.peek()[1]}'")

    def path(self) -> tuple[str, ...]:
        kind, value = self.take()
        if kind != "word":
            raise malformed(f"unexpected token: '{value}'")
        return tuple(value.split("."))

    def parse(self, nested: bool = False) -> Query:
        self.expect("select")
        query = Query("")
        if self.peek() == ("kw", "count") and self.peek(2) == ("op", ")") and not nested:
            self.index += 3
            query.count_only = True
        else:
            self.select_item(query, nested)
            while self.peek() == ("op", ","):
                self.take()
                self.select_item(query, nested)
        self.expect("from")
        query.sobject = self.path()[0]
        if self.accept("where"):
            query.where = self.disjunction()
        if self.accept("group", "by"):
            query.group_by.append(self.path())
            while self.peek() == ("op", ","):
                self.take()
                query.group_by.append(self.path())
        if self.accept("order", "by"):
            query.order_by.append(self.order_item())
            while self.peek() == ("op", ","):
                self.take()
                query.order_by.append(self.order_item())
        if self.accept("limit"):
            query.limit = self.integer()
        if self.accept("offset"):
            query.offset = self.integer()
        if self.peek()[0] != ("op" if nested else "end"):
            raise malformed(f"unexpected token: '{self.peek()[1]}'")
        return query

    def select_item(self, query: Query, nested: bool) -> None:
        """A field path, an aggregate, or (at the top level) a sub-query in parentheses."""
        word = self.peek()[1]
        if word.lower() in AGGREGATES and self.peek(1) == ("op", "("):
            self.index += 2
            path = self.path()
            if self.take() != ("op", ")"):
                raise malformed("expecting ')'")
            unnamed = sum(1 for a in query.aggregates if re.fullmatch(r"expr\d+", a.alias))
            alias = self.take()[1] if self.peek()[0] == "word" else f"expr{unnamed}"
            query.aggregates.append(Aggregate(word.lower(), path, alias))
            return
        if self.peek() != ("op", "("):
            query.fields.append(self.path())
            return
        if nested:
            raise malformed("nested sub-queries are not supported")
        self.take()
        query.subqueries.append(self.parse(nested=True))
        if self.take() != ("op", ")"):
            raise malformed("expecting ')'")

    def integer(self) -> int:
        kind, value = self.take()
        if kind != "number" or not value.isdigit():
            raise malformed(f"expecting a non-negative integer, found '{value}'")
        return int(value)

    def order_item(self) -> tuple[tuple[str, ...], bool, bool]:
        path = self.path()
        descending = self.accept("desc")
        if not descending:
            self.accept("asc")
        nulls_last = descending
        if self.accept("nulls"):
            nulls_last = self.accept("last")
            if not nulls_last:
                self.expect("first")
        return path, descending, nulls_last

    def disjunction(self) -> Any:
        operands = [self.conjunction()]
        while self.accept("or"):
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def conjunction(self) -> Any:
        operands = [self.negation()]
        while self.accept("and"):
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def negation(self) -> Any:
        if self.accept("not"):
            return BoolOp("not", (self.negation(),))
        if self.peek() == ("op", "("):
            self.take()
            inner = self.disjunction()
            if self.take() != ("op", ")"):
                raise malformed("expecting ')'")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.path()
        if self.accept("not", "in"):
            return Comparison(path, "not in", self.value_list())
        if self.accept("in"):
            return Comparison(path, "in", self.value_list())
        if self.accept("like"):
            return Comparison(path, "like", self.value())
        kind, op = self.take()
        if kind != "op" or op in ("(", ")", ","):
            raise malformed(f"unexpected token: '{op}'")
        return Comparison(path, "!=" if op == "<>" else op, self.value())

    def value_list(self) -> list[Any]:
        if self.take() != ("op", "("):
            raise malformed("expecting '('")
        values = [self.value()]
        while self.peek() == ("op", ","):
            self.take()
            values.append(self.value())
        if self.take() != ("op", ")"):
            raise malformed("expecting ')'")
        return values

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "number":
            return float(text)
        if kind == "date":
            day = date.fromisoformat(text)
            return DateRange(day, day + timedelta(days=1))
        if kind == "datetime":
            cleaned = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text.replace("Z", "+00:00"))
            return datetime.fromisoformat(cleaned)
        if kind == "kw" and text in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[text]
        if kind == "word":
            literal = date_literal(text)
            if literal:
                return literal
        raise malformed(f"unexpected token: '{text}'")


def parse(text: str) -> Query:
    """Parse a SOQL statement or raise ``MALFORMED_QUERY``."""
    return _Parser(text).parse()
