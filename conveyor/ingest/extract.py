"""Text out of files: PDF, DOCX, CSV, JSON, TXT and MD, each under limits that a hostile file cannot get past."""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.ingest.errors import ExtractionError

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_CHARS = 10_000_000
MAX_PDF_PAGES = 2_000
MAX_ZIP_MEMBERS = 1_000
MAX_ZIP_UNCOMPRESSED_BYTES = 100 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_CSV_FIELD_CHARS = 131_072  # the csv module's own default field limit

KINDS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv",
    ".json": "json",
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int = MAX_FILE_BYTES
    max_chars: int = MAX_CHARS
    max_pdf_pages: int = MAX_PDF_PAGES
    max_zip_members: int = MAX_ZIP_MEMBERS
    max_zip_uncompressed_bytes: int = MAX_ZIP_UNCOMPRESSED_BYTES
    max_json_depth: int = MAX_JSON_DEPTH


def kind_of(filename: str) -> str:
    """The document kind a file name's extension says, or ExtractionError naming the kinds we read."""
    suffix = Path(filename).suffix.lower()
    kind = KINDS.get(suffix)
    if kind is None:
        known = ", ".join(sorted(set(KINDS)))
        raise ExtractionError(f"unsupported file type {suffix or '(none)'!r}: use one of {known}")
    return kind


class _Text:
    """Collects extracted text and stops at the character limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.limit:
            raise ExtractionError(f"the document holds more than {self.limit} characters of text")
        self.parts.append(text)

    def result(self, separator: str = "\n\n") -> str:
        return separator.join(p for p in self.parts if p.strip())


def extract_file(path: str | Path, kind: str, limits: Limits | None = None) -> str:
    """The text of a file of this kind (see `kind_of`). Bad, empty or oversized files raise ExtractionError."""
    limits = limits or Limits()
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ExtractionError(f"cannot read the file: {exc.strerror}") from None
    if size == 0:
        raise ExtractionError("the file is empty (0 bytes)")
    if size > limits.max_file_bytes:
        raise ExtractionError(f"the file is {size} bytes; the limit is {limits.max_file_bytes}")
    readers = {"pdf": _pdf, "docx": _docx, "csv": _csv, "json": _json, "txt": _plain, "md": _plain}
    reader = readers.get(kind)
    if reader is None:
        raise ExtractionError(f"unsupported document kind {kind!r}")
    text = reader(path, limits)
    if not text.strip():
        raise ExtractionError(f"no text found in the {kind.upper()} file")
    return text


def decode_text(data: bytes) -> str:
    """UTF-8 with replacement characters for bad bytes; a byte-order mark is dropped."""
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")


def _plain(path: Path, limits: Limits) -> str:
    text = decode_text(path.read_bytes())
    if len(text) > limits.max_chars:
        raise ExtractionError(f"the document holds more than {limits.max_chars} characters of text")
    return text


def _pdf(path: Path, limits: Limits) -> str:
    # pypdf bounds every stream's decompressed size itself (LimitReachedError, a PyPdfError).
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    out = _Text(limits.max_chars)
    try:
        reader = PdfReader(path, strict=False)
        # Many PDFs are encrypted with an empty user password (only printing or copying is restricted).
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("the PDF is protected by a password")
        pages = len(reader.pages)
        if pages > limits.max_pdf_pages:
            raise ExtractionError(f"the PDF has {pages} pages; the limit is {limits.max_pdf_pages}")
        for page in reader.pages:
            out.add(page.extract_text() or "")
    except ExtractionError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise ExtractionError(f"not a readable PDF: {type(exc).__name__}: {exc}") from None
    return out.result()


def _check_zip(path: Path, limits: Limits) -> None:
    """A DOCX is a zip: refuse too many members or too many uncompressed bytes before anything inflates it.
    zipfile never yields more than a member's declared size, so the declared sizes bound the real work."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExtractionError(f"not a DOCX file (not a valid zip archive): {exc}") from None
    if len(members) > limits.max_zip_members:
        raise ExtractionError(f"the DOCX holds {len(members)} zip members; the limit is {limits.max_zip_members}")
    total = sum(m.file_size for m in members)
    if total > limits.max_zip_uncompressed_bytes:
        raise ExtractionError(
            f"the DOCX would inflate to {total} bytes; the limit is {limits.max_zip_uncompressed_bytes} "
            "(a zip bomb?)"
        )


def _docx(path: Path, limits: Limits) -> str:
    _check_zip(path, limits)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    out = _Text(limits.max_chars)
    try:
        document = docx.Document(str(path))
        for paragraph in document.paragraphs:
            out.add(paragraph.text)
        for table in document.tables:
            for row in table.rows:
                out.add(" | ".join(cell.text for cell in row.cells))
    except ExtractionError:
        raise
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError, RecursionError) as exc:
        raise ExtractionError(f"not a readable DOCX: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - lxml and python-docx raise many kinds on broken XML
        raise ExtractionError(f"not a readable DOCX: {type(exc).__name__}: {exc}") from None
    return out.result()


def _csv(path: Path, limits: Limits) -> str:
    """Each row becomes one record, `column: value` pairs named by the header row."""
    out = _Text(limits.max_chars)
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = [h.strip().removeprefix("\ufeff") for h in next(reader, [])]
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                pairs = []
                for i, cell in enumerate(row):
                    name = header[i] if i < len(header) and header[i] else f"column {i + 1}"
                    pairs.append(f"{name}: {cell.strip()}")
                out.add("; ".join(pairs))
        except csv.Error as exc:
            raise ExtractionError(f"invalid CSV at line {reader.line_num}: {exc}") from None
        if not out.parts and header:
            out.add("; ".join(header))
    return out.result("\n\n")


def _json(path: Path, limits: Limits) -> str:
    """Flattened key paths and values, one `a.b[0].c: value` line each."""
    text = decode_text(path.read_bytes())
    try:
        value = json.loads(text)
    except RecursionError:
        raise ExtractionError(f"the JSON is nested too deeply (the limit is {limits.max_json_depth} levels)") from None
    except json.JSONDecodeError as exc:
        raise ExtractionError(f"invalid JSON: {exc}") from None
    out = _Text(limits.max_chars)
    lines: list[str] = []
    for key, leaf in _flatten(value, limits.max_json_depth):
        line = f"{key}: {leaf}" if key else str(leaf)
        out.add(line)
        lines.append(line)
    return "\n".join(lines)


def _flatten(value: Any, max_depth: int) -> Iterator[tuple[str, str]]:
    """Leaves of a JSON value with their key paths, iteratively (no recursion to exhaust)."""
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        key, item, depth = stack.pop()
        if depth > max_depth:
            raise ExtractionError(f"the JSON is nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            children = [(f"{key}.{k}" if key else str(k), v, depth + 1) for k, v in item.items()]
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{key}[{i}]", v, depth + 1) for i, v in enumerate(item)]))
        elif item is None:
            yield key, "null"
        elif isinstance(item, bool):
            yield key, "true" if item else "false"
        else:
            yield key, str(item)
