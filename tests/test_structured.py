import pytest

from secondself.backends.chat import FakeChatModel, Message
from secondself.errors import StructuredOutputError
from secondself.structured import Field, extract_json, fill_fields, generate_json, structured

SCHEMA = {"type": "object", "required": ["name", "score"],
          "properties": {"name": {"type": "string"}, "score": {"type": "integer", "minimum": 0}}}


@pytest.mark.parametrize("raw,expected", [
    ('{"a": 1}', {"a": 1}),
    ('Sure! Here it is:\n```json\n{"a": [1, 2,],}\n```', {"a": [1, 2]}),
    ("{'a': 'b'}", {"a": "b"}),
    ('{a: 1, b: "x"}', {"a": 1, "b": "x"}),
    ('{"a": {"b": 1}', {"a": {"b": 1}}),
    ('text [1, 2] more', [1, 2]),
    ('{"s": "brace } inside"} trailing', {"s": "brace } inside"}),
])
def test_extract_json_repairs_common_slips(raw, expected):
    assert extract_json(raw) == expected


def test_extract_json_refuses_prose():
    with pytest.raises(ValueError):
        extract_json("I cannot do that.")


def test_retry_shows_the_validation_error_then_succeeds():
    model = FakeChatModel(['{"name": "cello", "score": "high"}', '{"name": "cello", "score": 3}'])
    assert generate_json(model, [Message("user", "rate it")], SCHEMA) == {"name": "cello", "score": 3}
    retry = model.calls[1][0]
    assert retry[-1].role == "user" and "score" in retry[-1].content and "not valid" in retry[-1].content


def test_gives_up_with_typed_error_and_every_attempt():
    model = FakeChatModel(["nope", "{bad", '{"name": 1}'])
    with pytest.raises(StructuredOutputError) as e:
        generate_json(model, [Message("user", "x")], SCHEMA, attempts=3, what="a rating")
    assert len(e.value.attempts) == 3 and "a rating" in str(e.value)


def test_fill_fields_coerces_and_retries():
    model = FakeChatModel(["Cello playing\nextra line", "Musician", "n/a", "about 7 years", "14 August 1993",
                           "music, ceramics; climbing"])
    fields = [Field("name", "Topic name:"), Field("role", "Role:", kind="choice", choices=("musician", "athlete")),
              Field("years", "Years:", kind="integer"), Field("born", "Born:", kind="date"),
              Field("tags", "Tags:", kind="list")]
    out = fill_fields(model, "Describe the topic.", fields)
    assert out == {"name": "Cello playing", "role": "musician", "years": 7, "born": "1993-08-14",
                   "tags": ["music", "ceramics", "climbing"]}
    assert model.calls[0][1].stop == ("\n",)
    assert "Topic name: Cello playing" in model.calls[1][0][0].content  # earlier answers are shown


def test_fill_fields_required_failure_and_optional_skip():
    model = FakeChatModel(["", "", "x"])
    with pytest.raises(StructuredOutputError):
        fill_fields(model, "i", [Field("n", "N:", kind="integer")], attempts=2)
    model = FakeChatModel(["", "", "ok"])
    assert fill_fields(model, "i", [Field("n", "N:", kind="integer", required=False), Field("t", "T:")],
                       attempts=2) == {"t": "ok"}


def test_structured_falls_back_from_json_to_fields():
    model = FakeChatModel(["not json", "still not", "Sourdough"])
    assert structured(model, "Name it.", [Field("name", "Name:")], prefer_json=True) == {"name": "Sourdough"}
    model = FakeChatModel(['{"name": "Bouldering"}'])
    assert structured(model, "Name it.", [Field("name", "Name:")], prefer_json=True) == {"name": "Bouldering"}


def test_choice_named_inside_a_sentence():
    model = FakeChatModel(["This note is about music, not work: the cello."])
    out = fill_fields(model, "i", [Field("area", "Area:", kind="choice", choices=("work", "music"))])
    assert out == {"area": "music"}
