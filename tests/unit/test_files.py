"""Uploaded files → message contents: type detection, extraction, chunking, errors."""

from __future__ import annotations

import io
import json
import random
import re
import time

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.errors import DependencyError

from services.ingest.files import (
    SUPPORTED_FILE_TYPES,
    UnreadableFile,
    UnsupportedFileType,
    UploadError,
    split_text,
    split_upload,
)


def make_pdf(*pages: str) -> bytes:
    """A minimal, valid PDF (Helvetica text, one line per page) with a correct xref table."""
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    bodies: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        bodies.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        bodies.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(bodies) + 1,
        xref,
    )
    return bytes(out)


def rewrite_pdf(data: bytes, *, user_password: str | None = None) -> bytes:
    """Round-trip through pypdf's writer, optionally RC4-encrypting (no extra deps needed)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def non_ws(text: str) -> str:
    return "".join(text.split())


def assert_valid_chunks(text: str, chunks: list[str], max_chars: int) -> None:
    """≤ max_chars, non-empty, trimmed, in order, and no non-whitespace character lost."""
    assert all(0 < len(chunk) <= max_chars for chunk in chunks)
    assert all(chunk == chunk.strip() for chunk in chunks)
    assert non_ws("".join(chunks)) == non_ws(text)
    position = 0
    for chunk in chunks:  # each chunk is a verbatim slice, in order
        found = text.find(chunk, position)
        assert found >= 0
        position = found + len(chunk)


def upload(
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    max_chars: int = 1000,
) -> list[str]:
    return split_upload(
        filename=filename, content_type=content_type, data=data, max_chars=max_chars
    )


# --- plain text and markdown ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        (None, "text/plain"),
        (None, "text/plain; charset=utf-8"),
        (None, "TEXT/PLAIN"),
        ("notes.txt", None),
        ("notes.TXT", "application/octet-stream"),
        ("C:\\Users\\me\\notes.txt", ""),
        ("README", None),  # nothing to go on: read as text
        (None, None),
    ],
)
def test_plain_text(filename: str | None, content_type: str | None) -> None:
    data = "Hello there.\n\nSecond paragraph, café ☕.".encode()
    assert upload(data, filename=filename, content_type=content_type) == [
        "Hello there.\n\nSecond paragraph, café ☕."
    ]


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [(None, "text/markdown"), (None, "text/x-markdown"), ("a.md", None), ("a.markdown", None)],
)
def test_markdown(filename: str | None, content_type: str | None) -> None:
    data = b"# Title\n\nSome *text*.\n\n- item one\n- item two\n"
    assert upload(data, filename=filename, content_type=content_type, max_chars=21) == [
        "# Title\n\nSome *text*.",
        "- item one\n- item two",
    ]


def test_utf8_bom_is_stripped() -> None:
    assert upload(b"\xef\xbb\xbfhello", content_type="text/plain") == ["hello"]


def test_content_type_wins_over_extension() -> None:
    assert upload(b"plain words", filename="report.pdf", content_type="text/plain") == [
        "plain words"
    ]


def test_long_text_is_chunked() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    chunks = upload(text.encode(), filename="a.txt", max_chars=100)
    assert len(chunks) > 1
    assert_valid_chunks(text, chunks, 100)
    # Cuts fall at sentence ends, never inside one.
    assert all(chunk.endswith("here.") for chunk in chunks)


# --- chunking preferences ---------------------------------------------------------------------


def test_paragraphs_are_packed_and_split_at_blank_lines() -> None:
    text = "First paragraph.\n\nSecond one here.\n\n\n  Third."
    assert split_text(text, 100) == [text.strip()]
    assert split_text(text, 35) == ["First paragraph.\n\nSecond one here.", "Third."]
    assert split_text(text, 20) == ["First paragraph.", "Second one here.", "Third."]


def test_line_breaks_before_sentences() -> None:
    text = "line one. still one\nline two. still two\nline three"
    assert split_text(text, 25) == ["line one. still one", "line two. still two", "line three"]


def test_sentence_ends_before_other_whitespace() -> None:
    text = "Alpha beta gamma. Delta epsilon! Zeta eta? Theta iota."
    assert split_text(text, 20) == [
        "Alpha beta gamma.",
        "Delta epsilon!",
        "Zeta eta?",
        "Theta iota.",
    ]
    quoted = 'He said "stop." Then left.'
    assert split_text(quoted, 16) == ['He said "stop."', "Then left."]


def test_cjk_sentences_split_without_spaces() -> None:
    text = "今日は晴れです。明日は雨です。明後日は曇りです。"
    assert split_text(text, 16) == ["今日は晴れです。明日は雨です。", "明後日は曇りです。"]


def test_whitespace_before_hard_cut() -> None:
    assert split_text("aaa bbb ccc ddd", 8) == ["aaa bbb", "ccc ddd"]


def test_hard_cut_as_last_resort() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    # The pieces of an over-long word are not glued to the words around it.
    assert split_text("ab " + "y" * 12 + " cd", 5) == ["ab", "yyyyy", "yyyyy", "yy", "cd"]


def test_long_whitespace_runs_stay_linear() -> None:
    started = time.perf_counter()
    assert split_text("a" + " " * 200_000 + "b", 10) == ["a", "b"]
    assert split_text("a\n" + "\t" * 200_000 + "b", 10) == ["a", "b"]
    assert len(split_text("word " * 200_000, 1000)) == 1000
    assert time.perf_counter() - started < 3.0


def test_whitespace_only_text_gives_no_chunks() -> None:
    assert split_text(" \n\t\u3000\n ", 10) == []
    assert split_text("", 10) == []


def test_random_texts_keep_every_invariant() -> None:
    rng = random.Random(42)
    pieces = ["word", "Longerword", "é", "日本", "😀", ".", "!", "?", "。", " ", "  ", "\n", "\n\n"]
    pieces += ["\t", "\r\n", "x" * 30, "\u3000"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 120)))
        max_chars = rng.choice([1, 2, 5, 13, 40, 200])
        assert_valid_chunks(text, split_text(text, max_chars), max_chars)


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars") as excinfo:
        upload(b"hello", content_type="text/plain", max_chars=0)
    assert not isinstance(excinfo.value, UploadError)
    with pytest.raises(ValueError, match="max_chars"):
        split_text("hello", 0)


# --- JSON -------------------------------------------------------------------------------------


def test_json_list_of_strings_one_message_each() -> None:
    data = json.dumps(["first", "", "  ", "second message", "ünïcode 🦩"]).encode()
    assert upload(data, filename="m.json") == ["first", "second message", "ünïcode 🦩"]


def test_json_list_of_strings_long_item_is_chunked() -> None:
    data = json.dumps(["short", "one two three four five six"]).encode()
    assert upload(data, content_type="application/json", max_chars=10) == [
        "short",
        "one two",
        "three four",
        "five six",
    ]


def test_json_list_of_objects_with_content() -> None:
    data = json.dumps(
        [
            {"content": "hi there", "peer_id": "alice"},
            {"content": "   "},
            {"content": "general kenobi", "metadata": {"x": 1}},
        ]
    ).encode()
    assert upload(data, content_type="application/json; charset=utf-8") == [
        "hi there",
        "general kenobi",
    ]


@pytest.mark.parametrize(
    "value",
    [
        {"title": "Report", "items": [1, 2, 3], "name": "Zoë"},
        ["a string", {"content": "an object"}],  # mixed list
        [{"content": 3}],  # content not a string
        [{"text": "no content key"}],
        "just a string",
        42,
        None,
    ],
)
def test_other_json_is_pretty_printed(value: object) -> None:
    data = json.dumps(value).encode()
    assert upload(data, filename="x.json", max_chars=10_000) == [
        json.dumps(value, indent=2, ensure_ascii=False)
    ]


def test_other_json_is_chunked_when_long() -> None:
    value = {f"key{i}": f"value number {i}" for i in range(50)}
    chunks = upload(json.dumps(value).encode(), filename="x.json", max_chars=80)
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    assert len(chunks) > 1
    assert_valid_chunks(pretty, chunks, 80)


def test_json_structured_suffix_content_type() -> None:
    assert upload(b'["a", "b"]', content_type="application/ld+json") == ["a", "b"]


def test_json_with_bom() -> None:
    assert upload(b'\xef\xbb\xbf["a"]', filename="x.json") == ["a"]


# --- PDF --------------------------------------------------------------------------------------


def test_pdf_text_is_extracted_and_pages_joined() -> None:
    pdf = make_pdf("Hello from page one.", "Second page (with parens).")
    assert upload(pdf, content_type="application/pdf") == [
        "Hello from page one.\n\nSecond page (with parens)."
    ]
    assert upload(pdf, filename="doc.pdf", max_chars=20) == [
        "Hello from page one.",
        "Second page (with",
        "parens).",
    ]


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("doc.PDF", None),
        (None, "application/x-pdf"),
        (None, None),  # sniffed
        ("upload.bin", "application/octet-stream"),  # sniffed despite an unknown extension
    ],
)
def test_pdf_detection(filename: str | None, content_type: str | None) -> None:
    pdf = make_pdf("Detected as a PDF.")
    assert upload(pdf, filename=filename, content_type=content_type) == ["Detected as a PDF."]


def test_pdf_written_by_pypdf() -> None:
    pdf = rewrite_pdf(make_pdf("Round tripped."))
    assert upload(pdf, filename="x.pdf") == ["Round tripped."]


def test_pdf_with_empty_user_password_is_read() -> None:
    pdf = rewrite_pdf(make_pdf("Only editing is restricted."), user_password="")
    assert upload(pdf, filename="x.pdf") == ["Only editing is restricted."]


def test_pdf_nul_artefacts_are_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    monkeypatch.setattr(PageObject, "extract_text", lambda self, *a, **k: "ab\x00cd")
    assert upload(make_pdf("ignored"), filename="x.pdf") == ["abcd"]


# --- errors -----------------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(UploadError, ValueError)
    assert issubclass(UnsupportedFileType, UploadError)
    assert issubclass(UnreadableFile, UploadError)


@pytest.mark.parametrize(
    ("filename", "content_type", "named"),
    [
        ("photo.png", "image/png", "image/png"),
        ("sheet.csv", "text/csv", "text/csv"),
        ("letter.docx", None, ".docx"),
        ("letter.docx", "application/octet-stream", ".docx"),
    ],
)
def test_unsupported_type_names_it_and_the_supported_ones(
    filename: str, content_type: str | None, named: str
) -> None:
    with pytest.raises(UnsupportedFileType) as excinfo:
        upload(b"some bytes", filename=filename, content_type=content_type)
    message = str(excinfo.value)
    assert repr(named) in message
    assert SUPPORTED_FILE_TYPES in message
    assert "application/pdf" in message and ".md" in message


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("empty.txt", None), ("empty.json", None), ("empty.pdf", None), (None, "text/markdown")],
)
def test_empty_file(filename: str | None, content_type: str | None) -> None:
    with pytest.raises(UnreadableFile, match="is empty"):
        upload(b"", filename=filename, content_type=content_type)


def test_whitespace_only_file_has_no_text() -> None:
    with pytest.raises(UnreadableFile, match="no text"):
        upload(b" \n\n\t \r\n", filename="blank.txt")


def test_json_with_no_messages() -> None:
    with pytest.raises(UnreadableFile, match="no text"):
        upload(b"[]", filename="x.json")
    with pytest.raises(UnreadableFile, match="no text"):
        upload(b'["", "  "]', filename="x.json")


def test_invalid_utf8_names_the_byte() -> None:
    with pytest.raises(UnreadableFile, match=r"not valid UTF-8.*0xff at offset 3.*UTF-8"):
        upload(b"abc\xffdef", filename="latin.txt")


def test_invalid_utf8_in_json() -> None:
    with pytest.raises(UnreadableFile, match="not valid UTF-8"):
        upload(b'["caf\xe9"]', filename="x.json")


def test_utf16_file_is_rejected_with_advice() -> None:
    with pytest.raises(UnreadableFile, match=r"UTF-16.*save it as UTF-8"):
        upload("hello".encode("utf-16"), filename="win.txt")


def test_pdf_bytes_sent_as_text_get_a_hint() -> None:
    data = make_pdf("x") + b"\xff\xfe binary tail"
    with pytest.raises(UnreadableFile, match="looks like a PDF"):
        upload(data, content_type="text/plain")


def test_nul_in_text_is_rejected() -> None:
    with pytest.raises(UnreadableFile, match="NUL"):
        upload(b"abc\x00def", filename="a.txt")


def test_nul_in_json_string_is_rejected() -> None:
    with pytest.raises(UnreadableFile, match="NUL"):
        upload(b'["fine", "bad\\u0000here"]', filename="x.json")
    with pytest.raises(UnreadableFile, match="NUL"):
        upload(b'[{"content": "\\u0000"}]', filename="x.json")


def test_lone_surrogate_in_json_is_rejected() -> None:
    with pytest.raises(UnreadableFile, match="surrogate"):
        upload(b'["a\\ud800b"]', filename="x.json")


def test_invalid_json_says_where() -> None:
    with pytest.raises(UnreadableFile, match=r"not valid JSON: .* line 2, column 8"):
        upload(b'{"a": 1,\n  "b": }', filename="x.json")


def test_json_nested_too_deeply() -> None:
    depth = 200_000
    with pytest.raises(UnreadableFile, match="JSON"):
        upload(b"[" * depth + b"]" * depth, filename="x.json")


def test_json_number_too_long() -> None:
    with pytest.raises(UnreadableFile, match="JSON"):
        upload(b"[" + b"9" * 10_000 + b"]", filename="x.json")


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\nthis is not really a pdf",
        b"not a pdf at all",
        make_pdf("cut short")[:120],
    ],
)
def test_broken_pdf(data: bytes) -> None:
    with pytest.raises(UnreadableFile, match=r"could not be read as a PDF.*damaged"):
        upload(data, content_type="application/pdf")


def test_password_protected_pdf() -> None:
    pdf = rewrite_pdf(make_pdf("secret text"), user_password="hunter2")
    with pytest.raises(UnreadableFile, match="password-protected PDF"):
        upload(pdf, filename="locked.pdf")


def test_pdf_encryption_needing_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = rewrite_pdf(make_pdf("aes text"), user_password="")

    def needs_cryptography(self: PdfReader, password: str | bytes) -> None:
        raise DependencyError("cryptography>=3.1 is required for AES algorithm")

    monkeypatch.setattr(PdfReader, "decrypt", needs_cryptography)
    with pytest.raises(UnreadableFile, match="encrypted"):
        upload(pdf, filename="aes.pdf")


def test_pdf_without_text() -> None:
    with pytest.raises(UnreadableFile, match="no extractable text"):
        upload(blank_pdf(), filename="scan.pdf")


def test_error_messages_name_the_file() -> None:
    with pytest.raises(UnreadableFile, match=re.escape("'bad.json'")):
        upload(b"{", filename="bad.json")
