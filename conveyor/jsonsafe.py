"""What a job stores must be plain JSON that both backends keep as it is: no NaN or infinity (PostgreSQL refuses
them, SQLite would store them), no NUL character in a string (PostgreSQL's jsonb cannot hold one), nothing JSON has
no value for. A value that breaks this is refused with a message naming where, never altered."""

from __future__ import annotations

import json
import math
from typing import Any

from conveyor.errors import InvalidArgumentsError

_strict = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode


def json_problem(value: Any, where: str) -> str | None:
    """Why `value` is not storable JSON, naming the first place (`args.x`), or None if it is."""
    try:
        text = _strict(value)
    except (ValueError, TypeError, RecursionError):
        return _find(value, where) or f"{where} is not valid JSON"
    if "\\u0000" in text or "\x00" in text:
        return _find(value, where) or f"{where} holds a NUL character"
    return None


def fields_problem(fields: dict[str, Any]) -> str | None:
    """The first field of a JSON object (a request body) that is not storable JSON, named from its root (`queue`,
    `args.x`, `jobs[2].type`), or None."""
    return next((p for key, item in fields.items() if (p := json_problem(item, str(key))) is not None), None)


def check_json(value: Any, where: str) -> None:
    problem = json_problem(value, where)
    if problem is not None:
        raise InvalidArgumentsError(problem)


def _find(value: Any, where: str) -> str | None:
    """The first offending place, walking the value (only on the slow path, after a strict encode failed)."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{path}: {item!r} is not valid JSON (NaN and infinity are refused)"
        elif isinstance(item, str):
            if "\x00" in item:
                return f"{path}: a string with a NUL character (\\u0000) cannot be stored"
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if not isinstance(key, str):
                    return f"{path}: key {key!r} is not a string"
                if "\x00" in key:
                    return f"{path}: a key with a NUL character (\\u0000) cannot be stored"
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
        else:
            return f"{path}: a {type(item).__name__} is not JSON"
    return None
