from secondself.evaluation import LabelledQuery, first_relevant_rank, is_relevant, load_queries, token_f1
from secondself.types import Chunk

from .conftest import EXAMPLES


def chunk(path, text):
    return Chunk(id=1, source="s", path=path, title="", position=0, text=text)


def test_relevance_by_path_and_phrase():
    q = LabelledQuery("q", "?", "", True, ({"path": "mail/archive.mbox", "contains": "signed  the LEASE"},))
    assert is_relevant(chunk("mail/archive.mbox#<id@x>", "We signed the\nlease today."), q)
    assert not is_relevant(chunk("mail/other.mbox#x", "We signed the lease today."), q)
    assert first_relevant_rank([chunk("a", "x"), chunk("mail/archive.mbox", "signed the lease")], q) == 2


def test_token_f1():
    assert token_f1("Lisbon [1].", "Lisbon") == 1.0
    assert token_f1("I live in Lisbon", "Lisbon") == 0.4
    assert token_f1("Porto", "Lisbon") == 0.0


def test_example_query_set_is_well_formed():
    qs = load_queries(EXAMPLES / "maya" / "queries.jsonl")
    assert sum(q.answerable for q in qs) >= 40 and any(not q.answerable for q in qs)
    assert all(q.relevant for q in qs if q.answerable)
    assert all(not q.relevant for q in qs if not q.answerable)
    assert len({q.id for q in qs}) == len(qs)
