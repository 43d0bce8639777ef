"""Spaces: a discussion between the person's roles and other second selves, hosted by the person's own.

    host opening ──► round 1: each participant adds a turn ──► … round N ──► host summary

Participants (`parse_participant`):
    self                                   the person's default persona
    role:NAME                              one of the person's roles: its instructions, model and memory scope
    http://host:port/v1[?model=M&name=N]#env:VAR | #TOKEN
                                           another second self, or any OpenAI-compatible endpoint; the model is
                                           `secondself` unless `model=` names another (`secondself:ROLE`)
The host is `self` or a role. Its opening is a template (it states the topic, who takes part and the goal,
without a model call); its summary is written by its model from the transcript (its instructions as a system
prompt, for a model that follows one), and lists after it the participants who were not heard and why.

What the models say is checked: a turn or a summary that repeats the instructions a space's models are given
(five words in a row from the space's and the persona's prompts, or a role's own instructions) says nothing.
Such a local turn is replaced by "I have nothing to add ..." (`meta.fallback`), a remote one is skipped with
the reason, and such a summary (or one that loops or names what nobody said) becomes a list of the turns;
when no participant said anything, the host's model is not asked to sum it up.

Disclosure. A local participant reads only what its scope allows (enforced in retrieval, roles.py) and sees the
whole transcript: it stays on this machine (unless the role's own model is remote, which the runtime
announces). A remote participant is sent one message: the topic and the transcript so far, after the space's
rules and its own are applied —
- citations: the `[n]` markers of local turns are always removed; the cited memories (title, date, snippet)
  are added only with `share_citations`;
- never-share: each term is replaced by "[withheld]" wherever it occurs in the message (whole words, any case
  or accent); `source:NAME` / `tag:NAME` withhold every local turn that cites a memory from that source /
  from sources with that tag.
The remote turn's `meta` records what was withheld (counts only).

Secrets. A token given inline (`#TOKEN`) is stored in `space_secrets` and nowhere else, and shown as `#***`;
`#env:VAR` names an environment variable read at each call (recommended: nothing is stored). Nothing here
returns a secret.

Failures. A participant that times out (`timeout` seconds per turn) or fails (a wrong token, a server that is
down, a model error) gets a `skipped` turn with the error, and the run goes on. When no participant answered
in the first round, the space ends `failed`, and its summary says who failed and why.

Runs. Every turn is stored as soon as it is spoken, so a run cut off keeps its transcript:
    created ──► running ──► done | failed
                   └──► stopped  (Ctrl-C, a cancelled job; a killed process leaves 'running')
Running a space again CONTINUES an unfinished one (created, running, stopped) from the first turn missing from
its transcript. A finished one (done or failed) runs again only with `restart`, which replaces its transcript.

Modules: `space` (participants, the stored space and its turns), `run` (what each participant is shown, and
the run itself).
"""

from __future__ import annotations

from .run import outgoing_messages, redact, run_space
from .space import (
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    MAX_PARTICIPANTS,
    MAX_ROUNDS,
    MAX_TOPIC,
    WITHHELD,
    Participant,
    Space,
    Turn,
    create_space,
    delete_space,
    get_space,
    list_spaces,
    parse_participant,
    reset_space,
)

__all__ = ["Participant", "Turn", "Space", "parse_participant", "create_space", "list_spaces", "get_space",
           "delete_space", "reset_space", "run_space", "redact", "outgoing_messages",
           "DEFAULT_MODEL", "DEFAULT_TIMEOUT", "WITHHELD", "MAX_TOPIC", "MAX_PARTICIPANTS", "MAX_ROUNDS"]
