"""Files generated from the catalogs (docs tables, editor grammar and schema) are up to date: `make generate`."""

from __future__ import annotations

from dslc.editor import generate


def test_generated_files_are_up_to_date():
    stale = [str(p.relative_to(generate.ROOT)) for p in generate.stale()]
    assert not stale, f"out of date: {', '.join(stale)}; run `make generate`"


def test_generate_rewrites_a_stale_table(tmp_path, monkeypatch):
    doc = tmp_path / "language.md"
    text = generate.DOC.read_text(encoding="utf-8")
    doc.write_text(text.replace("| `linear` |", "| `lienar` |"), encoding="utf-8")
    monkeypatch.setattr(generate, "DOC", doc)
    assert doc in generate.stale()
    assert generate.language_doc(doc.read_text(encoding="utf-8")) == text
