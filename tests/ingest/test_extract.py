"""Extraction of real files generated here, and hostile inputs that must fail cleanly."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from conveyor.ingest.errors import ExtractionError
from conveyor.ingest.extract import Limits, extract_file, kind_of
from tests.ingest.conftest import make_docx, make_pdf


def test_kinds_by_extension() -> None:
    assert kind_of("Report.PDF") == "pdf"
    assert kind_of("a.docx") == "docx"
    assert kind_of("notes.markdown") == "md"
    with pytest.raises(ExtractionError, match=r"unsupported file type '.exe'"):
        kind_of("virus.exe")


def test_pdf(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "a.pdf", ["The harbour master counts seagulls at dawn.", "Second line (with parens)."])
    text = extract_file(path, "pdf")
    assert "harbour master counts seagulls" in text
    assert "(with parens)" in text


def test_docx_paragraphs_and_tables(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "a.docx", ["Tulips bloom in April.", "Second paragraph."], [["city", "river"],
                                                                                            ["Paris", "Seine"]])
    text = extract_file(path, "docx")
    assert "Tulips bloom in April." in text
    assert "Paris | Seine" in text


def test_csv_rows_are_records(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('name,colour\nbanana,yellow\n"kiwi, green","green\ninside"\n\n', encoding="utf-8")
    text = extract_file(path, "csv")
    records = text.split("\n\n")
    assert records[0] == "name: banana; colour: yellow"
    assert records[1] == "name: kiwi, green; colour: green\ninside"


def test_json_flattened_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"shop": {"fruits": [{"name": "apple", "ripe": True}, {"name": None}]}, "n": 3}))
    lines = extract_file(path, "json").splitlines()
    assert lines == ["shop.fruits[0].name: apple", "shop.fruits[0].ripe: true", "shop.fruits[1].name: null", "n: 3"]


def test_txt_and_md_with_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfcaf\xc3\xa9 and a bad byte \xff here")
    assert extract_file(path, "txt") == "café and a bad byte \ufffd here"
    md = tmp_path / "a.md"
    md.write_text("# Title\n\nSome *markdown*.", encoding="utf-8")
    assert "Some *markdown*." in extract_file(md, "md")


# ---------------------------------------------------------------------------------------------- hostile inputs
def test_random_bytes_named_pdf(tmp_path: Path) -> None:
    path = tmp_path / "evil.pdf"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ExtractionError, match=r"not a readable PDF"):
        extract_file(path, "pdf")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.touch()
    with pytest.raises(ExtractionError, match=r"empty"):
        extract_file(path, "txt")


def test_docx_zip_bomb(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "bomb.docx", ["harmless"])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("word/media/bomb.bin", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(120):
                member.write(block)
    assert path.stat().st_size < 2 * 1024 * 1024
    with pytest.raises(ExtractionError, match=r"zip bomb"):
        extract_file(path, "docx")


def test_docx_with_too_many_members(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "many.docx", ["x"])
    with zipfile.ZipFile(path, "a") as archive:
        for i in range(30):
            archive.writestr(f"junk/{i}.xml", "<a/>")
    with pytest.raises(ExtractionError, match=r"zip members"):
        extract_file(path, "docx", Limits(max_zip_members=20))


def test_random_bytes_named_docx(tmp_path: Path) -> None:
    path = tmp_path / "evil.docx"
    path.write_bytes(os.urandom(2048))
    with pytest.raises(ExtractionError, match=r"not a DOCX"):
        extract_file(path, "docx")


def test_json_nested_100000_deep(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ExtractionError, match=r"nested too deeply|deeper than"):
        extract_file(path, "json")


def test_json_deeper_than_the_limit_but_parseable(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"a":' * 100 + "1" + "}" * 100)
    with pytest.raises(ExtractionError, match=r"deeper than 64 levels"):
        extract_file(path, "json")


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"a": ')
    with pytest.raises(ExtractionError, match=r"invalid JSON"):
        extract_file(path, "json")


def test_csv_with_a_10_mb_single_line_field(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("w") as handle:
        handle.write("name,blob\nx,")
        handle.write("a" * (10 * 1024 * 1024))
        handle.write("\n")
    with pytest.raises(ExtractionError, match=r"invalid CSV at line 2: field larger than field limit"):
        extract_file(path, "csv")


def test_csv_strict_mode_refuses_a_bad_quote(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n"x"y,z\n')
    with pytest.raises(ExtractionError, match=r"invalid CSV"):
        extract_file(path, "csv")


def test_character_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("word " * 1000)
    with pytest.raises(ExtractionError, match=r"more than 100 characters"):
        extract_file(path, "txt", Limits(max_chars=100))


def test_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 2000)
    with pytest.raises(ExtractionError, match=r"limit is 1000"):
        extract_file(path, "txt", Limits(max_file_bytes=1000))


def test_pdf_page_limit(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "a.pdf", ["one page"])
    with pytest.raises(ExtractionError, match=r"1 pages; the limit is 0"):
        extract_file(path, "pdf", Limits(max_pdf_pages=0))


def test_encrypted_pdfs(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(tmp_path / "plain.pdf", ["Restricted but readable text."])
    for user_password, name in (("", "open.pdf"), ("s3cret", "locked.pdf")):
        writer = PdfWriter(clone_from=PdfReader(plain))
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
        with (tmp_path / name).open("wb") as handle:
            writer.write(handle)
    assert "Restricted but readable text." in extract_file(tmp_path / "open.pdf", "pdf")
    with pytest.raises(ExtractionError, match=r"protected by a password"):
        extract_file(tmp_path / "locked.pdf", "pdf")
