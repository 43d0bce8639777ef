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
