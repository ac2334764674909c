"""The Honcho filter DSL, translated to SQLAlchemy conditions.

A filter is a JSON object. Keys are fields (per resource, see :class:`FieldSpec`) or the logical
operators ``AND`` / ``OR`` / ``NOT`` (each a list of filters; ``NOT`` negates the conjunction of
its items' negations, i.e. none may match). A field's value is:

* a scalar — equality; ``"*"`` matches everything;
* a list — membership (``in``);
* an object of operators — ``gte``, ``lte``, ``gt``, ``lt``, ``ne``, ``in``, ``contains``,
  ``icontains`` (combined with AND).

Under ``metadata`` a nested object is JSON containment, except that an object made only of
operators applies them to that metadata key (``{"metadata": {"score": {"gte": 3}}}``).
Anything else — unknown fields or operators, values of the wrong type — raises
:class:`~libs.common.errors.ValidationError` (422) naming the offending path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    false,
    func,
    not_,
    or_,
    true,
)
from sqlalchemy.orm import QueryableAttribute

from libs.common.errors import ValidationError

FieldType = Literal["str", "int", "bool", "datetime", "json", "str_array"]
OPERATORS = frozenset({"gte", "lte", "gt", "lt", "ne", "in", "contains", "icontains"})
LOGICAL = frozenset({"AND", "OR", "NOT"})
MAX_FILTER_DEPTH = 10
MAX_IN_VALUES = 1000


@dataclass(frozen=True)
class FieldSpec:
    column: ColumnElement[Any] | QueryableAttribute[Any]
    type: FieldType


def _fail(path: str, message: str) -> ValidationError:
    return ValidationError(f"Invalid filter at '{path}': {message}")


def _storable_text(value: str) -> bool:
    return "\x00" not in value and (value.isascii() or _utf8_ok(value))


def _utf8_ok(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_values(filters: Any) -> None:
    """Reject, as 422, values Postgres cannot take: NUL or unpaired surrogates in text or
    keys, NaN / Infinity, integers beyond 64 bits. Iterative: bodies may nest deeply."""
    stack: list[tuple[Any, str]] = [(filters, "filters")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _storable_text(value):
                raise _fail(path, "text must not contain NUL characters or unpaired surrogates")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -(2**63) <= value < 2**63:
                raise _fail(path, "integer outside the 64-bit range")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise _fail(path, "numbers must be finite (no NaN or Infinity)")
        elif isinstance(value, Mapping):
            for key, sub in value.items():
                if not isinstance(key, str) or not _storable_text(key):
                    raise _fail(path, "keys must not contain NUL characters or unpaired surrogates")
                stack.append((sub, f"{path}.{key}"))
        elif isinstance(value, list):
            stack.extend((sub, f"{path}[{i}]") for i, sub in enumerate(value))


def _coerce(value: Any, ftype: FieldType, path: str) -> Any:
    if ftype == "str":
        if not isinstance(value, str):
            raise _fail(path, f"expected a string, got {type(value).__name__}")
        return value
    if ftype == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(path, f"expected an integer, got {type(value).__name__}")
        return value
    if ftype == "bool":
        if not isinstance(value, bool):
            raise _fail(path, f"expected true or false, got {type(value).__name__}")
        return value
    if ftype == "datetime":
        if not isinstance(value, str):
            raise _fail(path, "expected an ISO-8601 date-time string")
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise _fail(path, f"'{value}' is not an ISO-8601 date-time") from exc
    raise _fail(path, "unsupported field type")


def _compare(col: Any, op: str, value: Any, ftype: FieldType, path: str) -> ColumnElement[bool]:
    if op == "in":
        if not isinstance(value, list):
            raise _fail(path, "'in' needs a list")
        if len(value) > MAX_IN_VALUES:
            raise _fail(path, f"'in' accepts at most {MAX_IN_VALUES} values")
        return col.in_([_coerce(v, ftype, path) for v in value])  # type: ignore[no-any-return]
    if op in ("contains", "icontains"):
        if ftype != "str":
            raise _fail(path, f"'{op}' applies to text fields only")
        text_value = _coerce(value, "str", path)
        escaped = text_value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        if op == "contains":
            return col.like(pattern, escape="\\")  # type: ignore[no-any-return]
        return col.ilike(pattern, escape="\\")  # type: ignore[no-any-return]
    if ftype == "bool" and op not in ("ne",):
        raise _fail(path, f"'{op}' does not apply to a boolean field")
    coerced = _coerce(value, ftype, path)
    if op == "gte":
        return col >= coerced  # type: ignore[no-any-return]
    if op == "lte":
        return col <= coerced  # type: ignore[no-any-return]
    if op == "gt":
        return col > coerced  # type: ignore[no-any-return]
    if op == "lt":
        return col < coerced  # type: ignore[no-any-return]
    if op == "ne":  # rows where the field is null do not equal the value either
        return col.is_distinct_from(coerced)  # type: ignore[no-any-return]
    raise _fail(path, f"unknown operator '{op}'")


def _is_operator_object(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(k in OPERATORS for k in value)


def _array_condition(col: Any, value: Any, path: str) -> ColumnElement[bool]:
    """A JSON array of strings: a scalar or ``contains`` means "holds this element", a list or
    ``in`` means "holds any of these"."""
    if isinstance(value, str):
        return col.contains([value])  # type: ignore[no-any-return]
    if isinstance(value, list) or (isinstance(value, dict) and set(value) == {"in"}):
        items = value if isinstance(value, list) else value["in"]
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise _fail(path, "expected a list of strings")
        if len(items) > MAX_IN_VALUES:
            raise _fail(path, f"'in' accepts at most {MAX_IN_VALUES} values")
        return or_(*(col.contains([v]) for v in items)) if items else false()
    if isinstance(value, dict) and set(value) == {"contains"}:
        if not isinstance(value["contains"], str):
            raise _fail(f"{path}.contains", "expected a string")
        return col.contains([value["contains"]])  # type: ignore[no-any-return]
    raise _fail(path, "list fields accept a string, a list, or {'contains' | 'in': ...}")


def _field_condition(spec: FieldSpec, value: Any, path: str) -> ColumnElement[bool]:
    col = spec.column
    if value == "*":
        return true()
    if spec.type == "json":
        return _metadata_condition(col, value, path)
    if spec.type == "str_array":
        return _array_condition(col, value, path)
    if spec.type == "int":  # compare as bigint: any 64-bit value is a valid bound
        col = cast(col, BigInteger)
    if isinstance(value, list):
        return _compare(col, "in", value, spec.type, path)
    if isinstance(value, dict):
        if not value:
            raise _fail(path, "empty operator object")
        unknown = sorted(set(value) - OPERATORS)
        if unknown:
            raise _fail(path, f"unknown operator(s) {unknown}; allowed: {sorted(OPERATORS)}")
        return and_(*(_compare(col, op, v, spec.type, f"{path}.{op}") for op, v in value.items()))
    if value is None:
        return col.is_(None)
    return col == _coerce(value, spec.type, path)  # type: ignore[no-any-return]


def _json_scalar_type(value: Any, path: str) -> FieldType | Literal["float"]:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    raise _fail(path, "operator values on metadata keys must be strings, numbers or booleans")


def _metadata_key_ops(col: Any, key: str, ops: Mapping[str, Any], path: str) -> ColumnElement[bool]:
    conds: list[ColumnElement[bool]] = []
    for op, v in ops.items():
        op_path = f"{path}.{op}"
        if op == "in":
            if not isinstance(v, list):
                raise _fail(op_path, "'in' needs a list")
            conds.append(or_(*(col.contains({key: item}) for item in v)) if v else false())
            continue
        kind = _json_scalar_type(v, op_path)
        if op == "ne":
            conds.append(not_(col.contains({key: v})))
        elif kind == "str":
            conds.append(_compare(col[key].astext, op, v, "str", op_path))
        elif kind in ("int", "float"):
            if op in ("contains", "icontains"):
                raise _fail(op_path, f"'{op}' applies to text values only")
            numeric = case(
                (func.jsonb_typeof(col[key]) == "number", col[key].astext.cast(Float)),
                else_=None,
            )
            conds.append(_numeric_compare(numeric, op, float(v), op_path))
        else:
            raise _fail(op_path, f"'{op}' does not apply to a boolean value")
    return and_(*conds)


def _numeric_compare(col: Any, op: str, value: float, path: str) -> ColumnElement[bool]:
    if op == "gte":
        return col >= value  # type: ignore[no-any-return]
    if op == "lte":
        return col <= value  # type: ignore[no-any-return]
    if op == "gt":
        return col > value  # type: ignore[no-any-return]
    if op == "lt":
        return col < value  # type: ignore[no-any-return]
    raise _fail(path, f"unknown operator '{op}'")


def _metadata_condition(col: Any, value: Any, path: str) -> ColumnElement[bool]:
    if not isinstance(value, dict):
        raise _fail(path, "metadata filters must be an object")
    conds: list[ColumnElement[bool]] = []
    containment: dict[str, Any] = {}
    for key, sub in value.items():
        if _is_operator_object(sub):
            conds.append(_metadata_key_ops(col, key, sub, f"{path}.{key}"))
        elif sub == "*":
            conds.append(col.has_key(key))
        else:
            containment[key] = sub
    if containment:
        conds.append(col.contains(containment))
    return and_(*conds) if conds else true()


def build_filter(
    filters: Mapping[str, Any] | None,
    fields: Mapping[str, FieldSpec],
    *,
    _path: str = "filters",
    _depth: int = 0,
) -> ColumnElement[bool]:
    """Translate ``filters`` to one SQL condition over ``fields``; raise 422 on any flaw."""
    if filters is None:
        return true()
    if not isinstance(filters, Mapping):
        raise _fail(_path, "a filter must be an object")
    if _depth == 0:
        _check_values(filters)
    if _depth > MAX_FILTER_DEPTH:
        raise _fail(_path, f"filters nest deeper than {MAX_FILTER_DEPTH} levels")
    conds: list[ColumnElement[bool]] = []
    for key, value in filters.items():
        path = f"{_path}.{key}"
        if key in LOGICAL:
            if not isinstance(value, list):
                raise _fail(path, f"'{key}' needs a list of filters")
            parts = [
                build_filter(item, fields, _path=f"{path}[{i}]", _depth=_depth + 1)
                for i, item in enumerate(value)
            ]
            if key == "AND":
                conds.append(and_(true(), *parts))
            elif key == "OR":
                conds.append(or_(*parts) if parts else true())
            else:  # none may match; a condition that is unknown (SQL null) does not match
                conds.append(and_(true(), *(not_(func.coalesce(p, false())) for p in parts)))
            continue
        spec = fields.get(key)
        if spec is None:
            allowed = sorted(set(fields) | LOGICAL)
            raise _fail(path, f"unknown field '{key}'; allowed: {allowed}")
        conds.append(_field_condition(spec, value, path))
    return and_(true(), *conds)


__all__ = ["FieldSpec", "build_filter"]
