from dataclasses import replace

import pytest

from secondself.errors import ProfileError
from secondself.memory import versions as v
from secondself.types import Fact, Profile, Shade, ShadeEvent, Status, Topic


def _profile(bio="Maya lives in Porto.", facts=None) -> Profile:
    facts = facts if facts is not None else (
        Fact("Maya", "lives_in", "Porto", None, "2025-06-30", (1,)),
        Fact("Maya", "lives_in", "Lisbon", "2025-07-01", None, (2,)))
    return Profile(0, "2025-01-01T00:00:00", "Maya", bio, bio.replace("Maya lives", "You live"),
                   Status("2025-12-31", "recent", "earlier"),
                   shades=(Shade("Cello", "cellist", "plays", ("t1",), (ShadeEvent("2025-05-24", "concert", (3,)),)),),
                   topics=(Topic("t1", "Cello", "about cello", ("cello",), (3, 4), "2025-01-01", "2025-05-24"),),
                   facts=facts, unclustered=(9,))


def test_versions_are_added_and_rollback_restores_exactly(store):
    with pytest.raises(ProfileError, match="secondself build"):
        v.load_version(store)
    p1 = v.save_version(store, _profile(), kind="build")
    p2 = v.save_version(store, _profile("Maya lives in Lisbon now."), kind="build")
    assert (p1.version, p2.version) == (1, 2) and v.current_version(store) == 2
    back = v.rollback(store, 1)
    assert back.version == 3 and v.current_version(store) == 3
    assert replace(v.load_version(store, 3), version=0) == replace(v.load_version(store, 1), version=0)
    assert v.diff(v.load_version(store, 1), v.load_version(store, 3)) == []
    kinds = [r["kind"] for r in v.list_versions(store)]
    assert kinds == ["build", "build", "rollback"] and v.list_versions(store)[-1]["current"]
    with pytest.raises(ProfileError, match="no profile version 99"):
        v.load_version(store, 99)


def test_diff_is_readable():
    a = _profile()
    b = _profile("Maya lives in Lisbon now.", facts=a.facts[:1] + (Fact("Maya", "works_at", "Tidewater Labs",
                                                                         "2025-09-08", None, (5,)),))
    lines = v.diff(a, b)
    assert any(line.startswith("~ biography:") and "[-Porto.-]" in line and "{+Lisbon now.+}" in line
               for line in lines)
    assert any(line.startswith("+ fact") and "works_at Tidewater Labs (2025-09-08 – now)" in line for line in lines)
    assert any(line.startswith("- fact") and "Lisbon" in line for line in lines)


def test_overrides_win_over_generated_text(store):
    generated = _profile()
    porto, lisbon = generated.facts
    v.set_override(store, "section", "biography", "I wrote this myself.")
    v.set_override(store, "forget", porto.id, v.fact_dict(porto))
    edited = replace(lisbon, object="Lisboa", origin="person", pinned=True)
    v.set_override(store, "fact", lisbon.id, v.fact_dict(edited))
    pinned = Fact("Maya", "drinks", "tea", sources=(7,))
    v.set_override(store, "pin", pinned.id, v.fact_dict(pinned))
    out = v.apply_overrides(generated, v.overrides(store))
    assert out.biography == "I wrote this myself." and out.edited == ("biography",)
    assert out.biography_second == generated.biography_second
    objects = {f.object: f for f in out.facts}
    assert "Porto" not in objects and "Lisbon" not in objects
    assert objects["Lisboa"].origin == "person" and objects["tea"].pinned
    assert v.find_fact(out, pinned.id[:5]).object == "tea"
    with pytest.raises(ProfileError):
        v.find_fact(out, "zzzz")


def test_edit_section_saves_a_version(store):
    v.save_version(store, _profile(), kind="build")
    p = v.edit_section(store, "status_recent", "Mostly resting.")
    assert p.version == 2 and p.status.recent == "Mostly resting." and "status_recent" in p.edited
    with pytest.raises(ProfileError, match="unknown section"):
        v.edit_section(store, "nickname", "x")
    with pytest.raises(ProfileError, match="empty"):
        v.edit_section(store, "biography", "  ")
