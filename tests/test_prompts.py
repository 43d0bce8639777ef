import pytest

from secondself.prompts import names, placeholders, render


@pytest.mark.parametrize("name", names())
def test_every_prompt_renders(name):
    values = {p: f"<{p}>" for p in placeholders(name)}
    text = render(name, **values)
    for v in values.values():
        assert v in text
    assert all(f"{{{p}}}" not in text for p in values)


def test_missing_or_extra_values_are_errors():
    with pytest.raises(KeyError, match="missing"):
        render("persona_user", name="x")
    with pytest.raises(KeyError, match="unexpected"):
        render("persona_user", question="q", extra=1)
    with pytest.raises(KeyError):
        render("no_such_prompt")


def test_the_prefill_prompts_examples_answer_in_the_schema_the_model_is_held_to():
    import json

    text = render("prefill_system", person="Maya")
    answers = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(answers) >= 3 and all(set(a) == {"note", "value"} for a in answers)
    assert any(a["value"] is None and a["note"] == 0 for a in answers)   # an example of saying "not stated"
