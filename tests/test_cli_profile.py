"""build / profile / facts from the command line, on a few notes, with the fake teacher."""

import json
from pathlib import Path

import pytest

from .test_cli import run


@pytest.fixture
def journal(journal_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("SECONDSELF_TEACHER_MODEL", "fake")
    monkeypatch.setenv("SECONDSELF_PERSON_NAME", "Maya")
    return journal_dir


def test_build_profile_facts_versions(capsys, journal, tmp_path):
    code, _, err = run(capsys, "profile")
    assert code == 2 and "run `secondself build` first" in err          # nothing built yet: a clear error
    run(capsys, "ingest", str(journal))
    code, out, err = run(capsys, "build", "--topics", "2")
    assert code == 0 and "version 1 saved" in out and "topics" in out
    code, out, _ = run(capsys, "build", "--topics", "2", "--json")
    assert json.loads(out)["up_to_date"] is True
    code, out, _ = run(capsys, "profile", "--json")
    p = json.loads(out)
    assert p["version"] == 1 and p["person"] == "Maya" and p["biography"]
    code, out, _ = run(capsys, "profile")
    assert "Biography" in out and "Shades" in out and "Recently (as of 2025-08-01)" in out
    code, out, _ = run(capsys, "facts", "--json")
    facts = {f["object"]: f for f in json.loads(out)}
    assert facts["Lisbon"]["valid_from"] == "2025-07-01" and facts["Porto"]["valid_to"] == "2025-06-30"
    assert facts["Lisbon"]["source_refs"][0]["path"].endswith("2025-07-01.md")
    code, out, _ = run(capsys, "facts", "--at", "2025-03-15", "--json")
    assert [f["object"] for f in json.loads(out) if f["predicate"] == "lives_in"] == ["Porto"]
    code, out, _ = run(capsys, "facts", "--at", "someday")
    assert code == 2
    code, out, _ = run(capsys, "facts")
    assert "lives_in Lisbon" in out and "2025-07-01.md" in out

    # corrections: edit a section, forget a fact, then a rebuild keeps both
    code, out, _ = run(capsys, "profile", "edit", "biography", "--text", "Maya, as she tells it.")
    assert code == 0 and "version 2" in out
    porto = facts["Porto"]["id"]
    code, out, _ = run(capsys, "profile", "forget", porto)
    assert code == 0 and "version 3" in out
    (journal / "2025-09-08.md").write_text("# 2025-09-08\n\nFirst cello lesson in Lisbon with a new teacher.\n")
    run(capsys, "ingest")
    code, out, _ = run(capsys, "build", "--topics", "2")
    assert code == 0 and "version 4 saved" in out
    code, out, _ = run(capsys, "profile", "--json")
    p4 = json.loads(out)
    assert p4["biography"] == "Maya, as she tells it." and porto not in {f["id"] for f in p4["facts"]}
    code, out, _ = run(capsys, "profile", "versions", "--json")
    assert [r["kind"] for r in json.loads(out)] == ["build", "edit", "edit", "build"]
    code, out, _ = run(capsys, "profile", "diff", "1", "4")
    assert "~ biography" in out and "- fact" in out
    code, out, _ = run(capsys, "profile", "rollback", "1")
    assert "version 5" in out
    code, out, _ = run(capsys, "profile", "diff", "1", "5")
    assert "no changes" in out
    code, _, err = run(capsys, "profile", "pin", "nosuchfact")
    assert code == 2 and "no single fact" in err
    code, out, _ = run(capsys, "profile", "edit", "biography", "--reset")
    assert "removed" in out


def test_forget_then_build_and_purge_removes_derived_text(capsys, journal):
    run(capsys, "ingest", str(journal), "--source-name", "journal")
    run(capsys, "build", "--topics", "2")
    code, out, _ = run(capsys, "forget", "journal", "--yes")
    assert "profile purge" in out
    code, out, _ = run(capsys, "build", "--topics", "2")
    assert code == 0 and "version 2 saved" in out
    code, out, _ = run(capsys, "profile", "--json")
    p = json.loads(out)
    assert p["facts"] == [] and p["topics"] == [] and "Lisbon" not in p["biography"]
    code, out, _ = run(capsys, "profile", "purge", "--yes")
    assert "deleted 1 old version" in out
    code, out, _ = run(capsys, "profile", "versions", "--json")
    assert [r["version"] for r in json.loads(out)] == [2]
