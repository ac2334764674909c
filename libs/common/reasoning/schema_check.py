"""A small JSON Schema validator for ``response_format`` answers (no third-party dependency).

The ``jsonschema`` package is not a dependency of Rapport, so structured dialectic answers are
checked here against the subset of JSON Schema that clients (and pydantic's
``model_json_schema()``) actually use:

* ``type`` (a name or a list of names; ``integer`` accepts whole floats such as ``1.0``, and
  booleans are never numbers), ``enum``, ``const``;
* objects: ``properties``, ``required``, ``additionalProperties`` (``false`` or a schema);
* arrays: ``items`` (one schema), ``minItems``, ``maxItems``;
* strings: ``minLength``, ``maxLength``; numbers: ``minimum``, ``maximum``;
* composition: ``anyOf``, ``oneOf`` (treated as ``anyOf``), ``allOf``;
* references: local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, ``#``).

Other keywords (``pattern``, ``format``, ``uniqueItems``, ``if``/``then`` …) are accepted and
not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["schema_errors"]

_MAX_ERRORS = 8
_MAX_DEPTH = 64


def _type_ok(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    return True  # unknown type names are not ours to reject


def _resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def schema_errors(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Why ``value`` does not validate against ``schema`` (empty when it does)."""
    errors: list[str] = []
    _check(value, schema, schema, "$", errors, 0)
    return errors[:_MAX_ERRORS]


def _check(
    value: Any,
    schema: Any,
    root: Mapping[str, Any],
    path: str,
    errors: list[str],
    depth: int,
) -> None:
    if len(errors) >= _MAX_ERRORS or depth > _MAX_DEPTH:
        return
    if schema is True or schema is None:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    if not isinstance(schema, Mapping):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve(root, ref)
        if target is None:
            errors.append(f"{path}: unresolvable $ref {ref!r}")
            return
        _check(value, target, root, path, errors, depth + 1)

    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    if isinstance(types, list) and types and not any(_type_ok(value, t) for t in types):
        errors.append(f"{path}: expected {' or '.join(map(str, types))}")
        return
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")

    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if (
            isinstance(options, list)
            and options
            and all(_collect(value, o, root, path, depth) for o in options)
        ):
            errors.append(f"{path}: matches none of the {keyword} alternatives")
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        for sub in all_of:
            _check(value, sub, root, path, errors, depth + 1)

    if isinstance(value, dict):
        _check_object(value, schema, root, path, errors, depth)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping | bool):
            for index, item in enumerate(value):
                _check(item, items, root, f"{path}[{index}]", errors, depth + 1)
        low, high = schema.get("minItems"), schema.get("maxItems")
        if isinstance(low, int) and len(value) < low:
            errors.append(f"{path}: needs at least {low} items")
        if isinstance(high, int) and len(value) > high:
            errors.append(f"{path}: allows at most {high} items")
    elif isinstance(value, str):
        low, high = schema.get("minLength"), schema.get("maxLength")
        if isinstance(low, int) and len(value) < low:
            errors.append(f"{path}: shorter than {low} characters")
        if isinstance(high, int) and len(value) > high:
            errors.append(f"{path}: longer than {high} characters")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        low, high = schema.get("minimum"), schema.get("maximum")
        if isinstance(low, int | float) and value < low:
            errors.append(f"{path}: below the minimum {low}")
        if isinstance(high, int | float) and value > high:
            errors.append(f"{path}: above the maximum {high}")


def _collect(value: Any, schema: Any, root: Mapping[str, Any], path: str, depth: int) -> list[str]:
    found: list[str] = []
    _check(value, schema, root, path, found, depth + 1)
    return found


def _check_object(
    value: dict[str, Any],
    schema: Mapping[str, Any],
    root: Mapping[str, Any],
    path: str,
    errors: list[str],
    depth: int,
) -> None:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    if isinstance(required, list):
        for name in required:
            if isinstance(name, str) and name not in value:
                errors.append(f"{path}: missing required property {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], root, f"{path}.{name}", errors, depth + 1)
        elif extra is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(extra, Mapping):
            _check(item, extra, root, f"{path}.{name}", errors, depth + 1)
