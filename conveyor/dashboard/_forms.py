"""The enqueue form: fields generated from a task's JSON schema, and the submitted form turned back into args."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import InvalidArgumentsError

EXTRA_FIELD = "args_json"


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    label: str
    kind: str  # text | number | integer | boolean | select | json
    required: bool
    default: str = ""
    description: str = ""
    options: list[str] = field(default_factory=list)
    checked: bool = False


def _pick(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The non-null branch of an `anyOf` (Optional[X]), and whether null is allowed."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema, schema.get("type") == "null"
    concrete = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
    nullable = len(concrete) < len(branches)
    if len(concrete) == 1:
        return {**schema, **concrete[0]}, nullable
    return {**schema, "type": "json"}, nullable


def _default_text(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "json":
        return json.dumps(value)
    return str(value)


def form_fields(schema: dict[str, Any]) -> list[FormField]:
    """One form field per property of the task's arguments schema."""
    required = set(schema.get("required", []))
    fields: list[FormField] = []
    for name, raw in (schema.get("properties") or {}).items():
        prop, _nullable = _pick(raw if isinstance(raw, dict) else {})
        kind = {"string": "text", "number": "number", "integer": "integer", "boolean": "boolean"}.get(
            str(prop.get("type")), "json"
        )
        options: list[str] = []
        if isinstance(prop.get("enum"), list):
            kind, options = "select", [str(v) for v in prop["enum"]]
        default = prop.get("default")
        fields.append(
            FormField(
                name=name,
                label=str(prop.get("title") or name),
                kind=kind,
                required=name in required,
                default=_default_text(default, kind),
                description=str(prop.get("description") or ""),
                options=options,
                checked=bool(default) if kind == "boolean" else False,
            )
        )
    return fields


def accepts_extra(schema: dict[str, Any]) -> bool:
    return schema.get("additionalProperties") not in (None, False) or not schema.get("properties")


def parse_args(fields: list[FormField], form: dict[str, str], extra_allowed: bool) -> dict[str, Any]:
    """The submitted values as the job's args; empty optional fields are left out (the task's default applies)."""
    args: dict[str, Any] = {}
    if extra_allowed and form.get(EXTRA_FIELD, "").strip():
        try:
            extra = json.loads(form[EXTRA_FIELD])
        except json.JSONDecodeError as exc:
            raise InvalidArgumentsError(f"arguments JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(extra, dict):
            raise InvalidArgumentsError("arguments JSON must be an object")
        args.update(extra)
    for f in fields:
        if f.kind == "boolean":
            args[f.name] = form.get(f.name) in ("on", "true", "1")
            continue
        text = form.get(f.name, "")
        if text == "" and f.kind != "text":
            continue
        if text == "" and not f.required:
            continue
        try:
            if f.kind == "integer":
                args[f.name] = int(text)
            elif f.kind == "number":
                args[f.name] = float(text)
            elif f.kind == "json":
                args[f.name] = json.loads(text)
            else:
                args[f.name] = text
        except ValueError:
            raise InvalidArgumentsError(f"{f.label}: {text!r} is not a valid {f.kind}") from None
    return args
