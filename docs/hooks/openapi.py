"""MkDocs hook: the REST reference (`rest-api.md`) and `openapi.json`, generated at build time from the OpenAPI
schema of the app `conveyor serve` runs (built-in tasks and ingestion included), so the page cannot drift from the code.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from conveyor import Conveyor
from conveyor.api import create_app

PAGE = "rest-api.md"
SCHEMA_FILE = "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    schema = app_schema()
    files.append(File.generated(config, PAGE, content=render(schema)))
    files.append(File.generated(config, SCHEMA_FILE, content=json.dumps(schema, indent=2)))
    return files


def app_schema() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        conveyor = Conveyor(f"sqlite:///{tmp}/docs.db")
        try:
            return create_app(conveyor).openapi()
        finally:
            conveyor.close()


def render(schema: dict[str, Any]) -> str:
    info = schema["info"]
    lines = [
        "# REST API reference",
        "",
        f"Generated when this site was built, from the OpenAPI schema of `conveyor serve` (Conveyor {info['version']},",
        "with its built-in tasks and the ingestion routes). A running server serves the same schema at",
        f"`/openapi.json` and Swagger UI at `/docs`; this build's copy is [openapi.json]({SCHEMA_FILE}).",
        "",
        "Every error answers `{\"error\": {\"code\", \"message\"}}` ([`ErrorOut`](#schema-errorout)). With",
        "`CONVEYOR_API_TOKEN` set, every `/api` route and `/metrics` need `Authorization: Bearer <token>`.",
        "",
    ]
    for tag, operations in by_tag(schema):
        title = (tag[:1].upper() + tag[1:]).replace("Http", "HTTP")
        lines += [f"## {title} {{#{anchor('tag', tag)}}}", ""]
        for method, path, op in operations:
            lines += operation(method, path, op)
    lines += ["## Schemas", ""]
    for name, model in schema.get("components", {}).get("schemas", {}).items():
        lines += component(name, model)
    return "\n".join(lines) + "\n"


def by_tag(schema: dict[str, Any]) -> Iterator[tuple[str, list[tuple[str, str, dict[str, Any]]]]]:
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                groups.setdefault((op.get("tags") or ["other"])[0], []).append((method, path, op))
    yield from groups.items()


def operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### {op.get('summary', path)} {{#{anchor(method, path)}}}", "", f"`{method.upper()} {path}`", ""]
    if op.get("description"):
        lines += [op["description"].strip(), ""]
    if op.get("parameters"):
        lines += ["| parameter | in | type | required | description |", "| --- | --- | --- | --- | --- |"]
        for p in op["parameters"]:
            required = "yes" if p.get("required") else ""
            description = cell(p.get("description") or p["schema"].get("description", ""))
            lines.append(f"| `{p['name']}` | {p['in']} | {type_of(p['schema'])} | {required} | {description} |")
        lines.append("")
    body = op.get("requestBody")
    if body:
        for media, content in body["content"].items():
            lines += [f"Request body (`{media}`): {type_of(content.get('schema', {}))}", ""]
            lines += fields(content.get("schema", {}))
    successes, errors = [], []
    for status, response in op.get("responses", {}).items():
        media = next(iter(response.get("content", {}).items()), None)
        body_type = f"{type_of(media[1].get('schema', {}))} (`{media[0]}`)" if media else "no body"
        if status.startswith(("4", "5")):
            errors.append(f"{status} {response.get('description', '')}")
        else:
            successes.append(f"| {status} | {body_type} | {cell(response.get('description', ''))} |")
    lines += ["| status | body | description |", "| --- | --- | --- |", *successes, ""]
    if errors:
        lines += ["Errors: " + "; ".join(errors) + ".", ""]
    return lines


def component(name: str, model: dict[str, Any]) -> list[str]:
    lines = [f"### {name} {{#{anchor('schema', name)}}}", ""]
    if model.get("description"):
        lines += [cell(model["description"]), ""]
    if "enum" in model:
        lines += ["One of " + ", ".join(f"`{v}`" for v in model["enum"]) + ".", ""]
    for part in model.get("allOf", []):
        lines += [f"{type_of(part)}, with:", ""] if "$ref" in part else fields(part)
    return lines + fields(model)


def fields(model: dict[str, Any]) -> list[str]:
    properties = model.get("properties")
    if not properties:
        return []
    required = set(model.get("required", []))
    lines = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for key, prop in properties.items():
        notes = [prop.get("description", "")]
        if "default" in prop:
            notes.append(f"default `{json.dumps(prop['default'])}`")
        description = cell("; ".join(n for n in notes if n))
        lines.append(f"| `{key}` | {type_of(prop)} | {'yes' if key in required else ''} | {description} |")
    return [*lines, ""]


def type_of(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{anchor('schema', name)})"
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            options = [type_of(s) for s in schema[combinator] if s.get("type") != "null"]
            nullable = any(s.get("type") == "null" for s in schema[combinator])
            return " or ".join(options) + (" or null" if nullable else "")
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {type_of(schema.get('items', {}))}"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if kind is None:
        return "any JSON"
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


def anchor(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
