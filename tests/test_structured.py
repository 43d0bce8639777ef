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


class ConstrainingFake(FakeChatModel):
    """A fake that claims to enforce Sampling.json_schema (as llama.cpp does); it records what it was sent."""

    constrains_output = True


def test_generate_json_sends_the_schema_to_the_model():
    model = FakeChatModel(['{"name": "cello", "score": 3}'])
    generate_json(model, [Message("user", "rate it")], SCHEMA)
    assert model.calls[0][1].json_schema == SCHEMA  # a backend that cannot constrain just ignores it


def test_structured_tries_json_first_when_the_model_constrains_output():
    fields = [Field("name", "Name:")]
    model = ConstrainingFake(['{"name": "Bouldering"}'])
    assert structured(model, "Name it.", fields) == {"name": "Bouldering"}
    assert model.calls[0][1].json_schema["required"] == ["name"]
    plain = FakeChatModel(["Sourdough"])  # cannot constrain: field by field, as before
    assert structured(plain, "Name it.", fields) == {"name": "Sourdough"}
    assert plain.calls[0][1].json_schema is None
    explicit = ConstrainingFake(["Sourdough"])  # an explicit choice still wins
    assert structured(explicit, "Name it.", fields, prefer_json=False) == {"name": "Sourdough"}


def test_fill_fields_constrains_choices_and_numbers_only():
    model = ConstrainingFake(['"music"', "7", "Cello"])
    fields = [Field("area", "Area:", kind="choice", choices=("work", "music")),
              Field("years", "Years:", kind="integer"), Field("name", "Name:")]
    assert fill_fields(model, "i", fields) == {"area": "music", "years": 7, "name": "Cello"}
    schemas = [sampling.json_schema for _, sampling in model.calls]
    assert schemas == [{"type": "string", "enum": ["work", "music"]}, {"type": "integer"}, None]
    plain = FakeChatModel(["music", "7", "Cello"])
    fill_fields(plain, "i", fields)
    assert all(sampling.json_schema is None for _, sampling in plain.calls)
