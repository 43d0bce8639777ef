"""Pre-fill forms from memory: a JSON Schema, a list of field names or an HTML form in; per field a value with
its sources and a confidence, or an empty field with the reason, out.

    from secondself.prefill import prefill
    result = prefill(runtime, open("form.json").read(), at="2025-10-01")   # anything with .store and .person
    result.to_dict()["values"]

The pipeline is deterministic: `forms` reads the form, `concepts` maps each field to what it asks for,
`evidence` collects what the memories (labelled lines, sections, first-person sentences) and the layer-1
facts say, and `fill` validates, groups and chooses (its docstring has the rules). Given a chat model
(`model=`), a field left without support gets one more candidate: `propose` shows the model the person's lines
that name the field and keeps its value only if it is written verbatim in the memory it cites and not marked
as past; `fill` then reads and validates it like any other (the embedded 135M model is not given one: it
cannot read facts, see memory/facts.py). A value is never guessed: it is text from a memory, normalized (ISO
dates, international phone numbers, lowercased emails) and validated against the field's schema.
"""

from .fill import FieldResult, PersonMemory, PrefillResult, field_concept, prefill, prefill_memory
from .forms import Form, FormField, parse_form

__all__ = ["prefill", "prefill_memory", "PersonMemory", "PrefillResult", "FieldResult", "Form", "FormField",
           "parse_form", "field_concept"]
