"""OData V2 as Cloud Integration's API speaks it, with no knowledge of the keystore: the JSON
wrapping (`{"d": ...}`, `{"d": {"results": [...]}}`), errors (`{"error": {"code": <reason
phrase>, "message": {"lang": "en", "value": ...}}}`), `/Date(ms)/`, Hexalias, and the query
options `$select`, `$filter` (`eq`, `ne`, `substringof`, `startswith`, `and`, `or`, brackets on
string, number and null values), `$top`, `$skip` and `$inlinecount`.

Work an input can cause is capped before it starts: filter text length and terms, `$top`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, JsonResponse

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

MAX_FILTER_LENGTH = 2000
MAX_FILTER_TERMS = 50
MAX_TOP = 100_000


class ODataError(Exception):
    """An answer other than success: HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JsonResponse:
        return error_response(self.status, self.message)


#: Where SAP's description names a status other than Python's phrase for it.
_CODES = {413: "Payload Too Large"}


def error_response(status: int, message: str | None) -> JsonResponse:
    code = _CODES.get(status) or HTTPStatus(status).phrase
    return JsonResponse(
        {"error": {"code": code, "message": {"lang": "en", "value": message}}}, status=status
    )


def entity(payload: Row) -> JsonResponse:
    return JsonResponse({"d": payload})


def collection(results: list[Row], count: int | None = None) -> JsonResponse:
    body: dict[str, Any] = {"results": results}
    if count is not None:
        body["__count"] = str(count)
    return JsonResponse({"d": body})


def date(moment: datetime | None) -> str | None:
    """OData V2 JSON: "/Date(<milliseconds since 1970 UTC>)/"."""
    if moment is None:
        return None
    return f"/Date({int(moment.timestamp() * 1000)})/"


def hexalias(alias: str) -> str:
    """Upper-case hex of the alias's UTF-8 bytes, as Cloud Integration writes it."""
    return alias.encode("utf-8").hex().upper()


def alias_of(hex_value: str) -> str:
    if len(hex_value) % 2:
        raise ODataError(400, f"hexBinary needs to be even-length: {hex_value}")
    try:
        return bytes.fromhex(hex_value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise ODataError(400, f"The Hexalias {hex_value!r} is not the hex of a UTF-8 alias.")


def flag(request: HttpRequest, name: str, default: bool = False) -> bool:
    """A boolean query parameter ("true" or "false")."""
    value = request.GET.get(name)
    if value is None or value == "":
        return default
    if value.lower() not in ("true", "false"):
        raise ODataError(400, f"The query option {name} must be true or false, not {value!r}.")
    return value.lower() == "true"


# -- query options -------------------------------------------------------------------------


@dataclass
class QueryOptions:
    select: list[str] | None
    where: Predicate | None
    top: int | None
    skip: int
    inlinecount: bool

    def apply(self, rows: Iterable[Row]) -> tuple[list[Row], int | None]:
        """Filter, count, page and select, in OData's order; returns (rows, count or None)."""
        kept = [row for row in rows if self.where(row)] if self.where else list(rows)
        count = len(kept) if self.inlinecount else None
        end = None if self.top is None else self.skip + self.top
        page = kept[self.skip : end]
        return [self.pick(row) for row in page] if self.select else page, count

    def pick(self, row: Row) -> Row:
        return {name: row.get(name) for name in self.select} if self.select else row


def query_options(request: HttpRequest, properties: Iterable[str]) -> QueryOptions:
    names = set(properties)
    select = None
    raw = request.GET.get("$select", "").strip()
    if raw and raw != "*":
        select = [name.strip() for name in raw.split(",") if name.strip()]
        unknown = [name for name in select if name not in names]
        if unknown:
            raise ODataError(400, f"Unknown property in $select: {', '.join(unknown)}.")
    where = parse_filter(request.GET.get("$filter", ""), names)
    top = _count_option(request, "$top")
    skip = _count_option(request, "$skip") or 0
    inline = request.GET.get("$inlinecount", "none")
    if inline not in ("allpages", "none"):
        raise ODataError(400, "$inlinecount must be allpages or none.")
    return QueryOptions(select, where, top, skip, inline == "allpages")


def _count_option(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise ODataError(400, f"{name} must be a whole number from 0 to {MAX_TOP}.")
    return min(int(raw), MAX_TOP)


# -- $filter ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),]))"
)
_COMPARISONS = {"eq", "ne"}
_FUNCTIONS = {"substringof", "startswith", "endswith"}


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ODataError(400, f"$filter cannot be read at: {text[position : position + 20]!r}")
        position = match.end()
        kind = match.lastgroup or ""
        value: Any = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        elif kind == "number":
            value = float(value) if "." in value else int(value)
        tokens.append((kind, value))
        if len(tokens) > MAX_FILTER_TERMS * 8:
            raise ODataError(400, "$filter is too long.")
    return tokens


class _FilterParser:
    """Recursive descent over: or-expression of and-expressions of terms; a term is a
    comparison, a function call (optionally "eq true"/"eq false") or a bracketed expression."""

    def __init__(self, tokens: list[tuple[str, Any]], names: set[str]) -> None:
        self.tokens, self.names, self.at, self.terms = tokens, names, 0, 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise ODataError(400, "$filter ends too early.")
        self.at += 1
        return token

    def expect(self, value: str) -> None:
        kind, got = self.take()
        if got != value:
            raise ODataError(400, f"$filter: expected {value!r}, found {got!r}.")

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "name" and str(token[1]).lower() == word:
            self.at += 1
            return True
        return False

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self.keyword("or"):
            right = self.conjunction()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.term()
        while self.keyword("and"):
            right = self.term()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def term(self) -> Predicate:
        self.terms += 1
        if self.terms > MAX_FILTER_TERMS:
            raise ODataError(400, f"$filter has more than {MAX_FILTER_TERMS} terms.")
        kind, value = self.take()
        if kind == "punct" and value == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if kind != "name":
            raise ODataError(400, f"$filter: a property or function was expected, not {value!r}.")
        if str(value).lower() in _FUNCTIONS:
            return self.function(str(value).lower())
        return self.comparison(self.property(value))

    def property(self, name: Any) -> str:
        if name not in self.names:
            raise ODataError(400, f"Unknown property in $filter: {name}.")
        return str(name)

    def literal(self) -> Any:
        kind, value = self.take()
        if kind in ("string", "number"):
            return value
        if kind == "name" and str(value) in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[str(value)]
        raise ODataError(400, f"$filter: a value was expected, not {value!r}.")

    def comparison(self, name: str) -> Predicate:
        kind, operator = self.take()
        if kind != "name" or str(operator).lower() not in _COMPARISONS:
            raise ODataError(400, f"$filter supports eq and ne, not {operator!r}.")
        wanted = self.literal()
        if str(operator).lower() == "eq":
            return lambda row: row.get(name) == wanted
        return lambda row: row.get(name) != wanted

    def function(self, function: str) -> Predicate:
        self.expect("(")
        if function == "substringof":
            needle = self.literal()
            self.expect(",")
            name = self.property(self.take()[1])
        else:
            name = self.property(self.take()[1])
            self.expect(",")
            needle = self.literal()
        self.expect(")")
        if not isinstance(needle, str):
            raise ODataError(400, f"$filter: {function} needs a string.")
        # Case-sensitive, as OData defines these functions.
        test = {
            "substringof": lambda value: needle in value,
            "startswith": lambda value: value.startswith(needle),
            "endswith": lambda value: value.endswith(needle),
        }[function]

        def predicate(row: Row) -> bool:
            value = row.get(name)
            return isinstance(value, str) and test(value)

        if self.keyword("eq"):
            expected = self.literal()
            if not isinstance(expected, bool):
                raise ODataError(400, f"$filter: {function}(...) eq takes true or false.")
            return predicate if expected else (lambda row: not predicate(row))
        return predicate


def parse_filter(text: str, names: set[str]) -> Predicate | None:
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_FILTER_LENGTH:
        raise ODataError(400, f"$filter is longer than {MAX_FILTER_LENGTH} characters.")
    parser = _FilterParser(_tokens(text), names)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise ODataError(400, f"$filter: unexpected {parser.peek()[1]!r}.")  # type: ignore[index]
    return predicate
