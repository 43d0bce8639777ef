"""Bridge mode: the person's second self between them and an outside expert model.

    enhance    the request plus only the personal details it needs (`disclosure` chooses them)
    expert     any chat model — usually an OpenAI-compatible endpoint — answers the enhanced request
    critique   the answer checked against the person's memory (`critic`): what it got wrong or missed
               about them, in their voice
    round 2    (optional) the critique goes back to the expert; its revision is critiqued again

The structure and the checks are deterministic; a model only writes prose. With a personal adapter
(`train/adapters.current`) that is the personal model, prompted exactly as it was trained (the "enhance" and
"critic" kinds of `train/templates.py`, same prompt files), so its trained skill is used; otherwise a model
given with `model=` (or a local persona model) is prompted with instructions, as a system prompt in its own chat
template (`bridge_*_system`; one user message for a model that does not follow a system prompt), and its prose
is taken as written, not as JSON. Either way its text is kept
only if it adds nothing that was not selected for disclosure — no new name or number (`grounding`), no word of
the person's memory that was left out, no never-share term — and keeps the request and every disclosed detail;
else the template's text is used and the step says why. The embedded 135M model is never asked: templates
are better.

Every run is logged in `bridge_runs`: each step's input, output, model and the details it disclosed (with
chunk ids, sources and the exact text). A failed expert call is logged as the failed step and re-raised with
the run id. Before anything is sent to a remote expert, `notify` lists exactly what is sent.

Modules: `disclosure` (what may be told for one request, under a `Policy`), `critic` (an answer checked
against the memory), `prose` (the template and the checks on a model's text), `run` (enhance, critique and
ask, on the `BridgeServices` the caller's runtime provides), `log` (the runs).
"""

from __future__ import annotations

from .critic import Point
from .disclosure import Item, Policy
from .log import BridgeRun, get_run, list_runs
from .prose import check_rewrite, compose
from .run import (
    MAX_REQUEST_CHARS,
    BridgeServices,
    Critique,
    Enhanced,
    ask,
    critique,
    enhance,
    resolve_expert,
)

__all__ = ["Policy", "Item", "Enhanced", "Point", "Critique", "BridgeRun", "BridgeServices", "enhance",
           "critique", "ask", "resolve_expert", "compose", "check_rewrite", "list_runs", "get_run", "MAX_REQUEST_CHARS"]
