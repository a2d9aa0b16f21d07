"""A recursive splitter: paragraphs, then lines, then sentences, then words, merged into chunks of a target size
with some overlap between neighbours."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_CHUNK_CHARS = 1000
DEFAULT_OVERLAP_CHARS = 150

_WORD = re.compile(r"\w+")
# Each splitter keeps its separator on the piece before it, so joining the pieces gives the text back.
_SPLITTERS: tuple[Callable[[str], list[str]], ...] = (
    re.compile(r"(?<=\n\n)").split,
    re.compile(r"(?<=\n)").split,
    re.compile(r"(?<=[.!?…。])(?=\s)").split,
    re.compile(r"(?<=\s)").split,
)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str
    char_count: int
    word_count: int


def split_text(text: str, size: int = DEFAULT_CHUNK_CHARS, overlap: int = DEFAULT_OVERLAP_CHARS) -> list[str]:
    """Chunks of at most `size` characters; neighbours share up to `overlap` characters of whole pieces."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be between 0 and the chunk size, got {overlap}")
    pieces = _pieces(text, size, 0)
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for piece in pieces:
        if current and length + len(piece) > size:
            chunks.append("".join(current))
            current, length = _tail(current, overlap)
            while current and length + len(piece) > size:
                length -= len(current.pop(0))
        current.append(piece)
        length += len(piece)
    if current:
        chunks.append("".join(current))
    return [c.strip() for c in chunks if c.strip()]


def _pieces(text: str, size: int, level: int) -> list[str]:
    if len(text) <= size:
        return [text] if text else []
    if level == len(_SPLITTERS):
        return [text[i : i + size] for i in range(0, len(text), size)]
    out: list[str] = []
    for part in _SPLITTERS[level](text):
        if len(part) <= size:
            if part:
                out.append(part)
        else:
            out.extend(_pieces(part, size, level + 1))
    return out


def _tail(pieces: list[str], overlap: int) -> tuple[list[str], int]:
    kept: list[str] = []
    length = 0
    for piece in reversed(pieces):
        if length + len(piece) > overlap:
            break
        kept.insert(0, piece)
        length += len(piece)
    return kept, length


def make_chunks(
    text: str, size: int = DEFAULT_CHUNK_CHARS, overlap: int = DEFAULT_OVERLAP_CHARS, first_index: int = 0
) -> list[Chunk]:
    return [
        Chunk(first_index + i, piece, len(piece), len(_WORD.findall(piece)))
        for i, piece in enumerate(split_text(text, size, overlap))
    ]
