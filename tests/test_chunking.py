from datetime import UTC, datetime

from secondself.ingest.chunking import chunk_blocks, split_sentences
from secondself.types import Block


def d(day: int) -> datetime:
    return datetime(2025, 3, day, tzinfo=UTC)


def words(n: int, w: str = "word") -> str:
    return ". ".join(f"{w}{i} x y" for i in range(n // 3)) + "."


def test_chunks_never_exceed_target_and_keep_all_text():
    text = words(600)
    chunks = list(chunk_blocks([Block(text, heading="H")], target=50, overlap=False))
    assert all(len(c.text.split()) <= 50 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_chunk_never_spans_two_headings_or_dates():
    blocks = [Block("a one.", heading="A"), Block("b one.", heading="B"),
              Block("c one.", heading="B", date=d(1)), Block("c two.", heading="B", date=d(2))]
    chunks = list(chunk_blocks(blocks, target=100))
    assert [(c.heading, c.text) for c in chunks] == [("A", "a one."), ("B", "b one."), ("B", "c one."),
                                                      ("B", "c two.")]
    assert chunks[2].date == d(1) and chunks[3].date == d(2)


def test_overlap_repeats_last_sentence():
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = list(chunk_blocks([Block(text)], target=30))
    last_of_first = split_sentences(chunks[0].text)[-1]
    assert chunks[1].text.startswith(last_of_first)


def test_chat_turns_are_whole_and_carry_speakers_and_first_date():
    turns = [Block(f"message {i} " * 4, speaker="Maya" if i % 2 else "Tomás", is_turn=True, date=d(i + 1))
             for i in range(12)]
    chunks = list(chunk_blocks(turns, target=30, overlap=False))
    assert len(chunks) > 1
    for c in chunks:
        for line in c.text.split("\n"):
            assert line.startswith(("Maya: ", "Tomás: ")) and line.count("message") == 4
        first = int(c.text.split("\n")[0].split()[2])
        assert c.date == d(first + 1)
    assert set(chunks[0].speakers) == {"Maya", "Tomás"}


def test_single_long_turn_is_split():
    chunks = list(chunk_blocks([Block(words(300), speaker="Maya", is_turn=True)], target=40))
    assert len(chunks) > 3 and all(len(c.text.split()) <= 40 for c in chunks)


def test_blocks_are_consumed_lazily():
    consumed = []

    def gen():
        for i in range(1000):
            consumed.append(i)
            yield Block(f"paragraph {i} has some words in it.")

    it = chunk_blocks(gen(), target=20)
    next(it)
    assert len(consumed) < 10
