import pytest

from secondself.conversations import ConversationLog, Turn
from secondself.errors import SecondSelfError


def test_log_round_trip_and_listing(store):
    log = ConversationLog(store)
    cid = log.start("Where do I live?", "fake")
    log.add(cid, Turn("user", "Where do I live?"))
    log.add(cid, Turn("assistant", "Lisbon [1].", [{"n": 1, "path": "a.md"}], meta={"ttft": 0.1}))
    other = log.start("second", "fake")
    log.add(other, Turn("assistant", "partial an", status="interrupted"))
    turns = log.turns(cid)
    assert [t.role for t in turns] == ["user", "assistant"] and turns[1].citations[0]["path"] == "a.md"
    assert log.turns(other)[0].status == "interrupted"
    assert [c.id for c in log.list()] == [other, cid] and log.list()[1].turns == 2
    with pytest.raises(SecondSelfError, match="no conversation"):
        log.turns(999)
