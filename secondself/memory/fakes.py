"""A scripted teacher for layer-1 demos and tests: answers every slot from the words it was shown.

It reads the "Words that stand out:" line of the topic/shade prompts and answers the slot asked for with
those words, so its answers are grounded by construction and pass validation — what a good teacher
would do, minus the insight. Asked for JSON (prose mode), it answers every slot at once. Anything else
(biography prose) gets the `FakeChatModel` default echo, which validation rejects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ..backends.chat import FakeChatModel, Message

__all__ = ["slot_teacher", "answer_slot"]


def answer_slot(messages: Sequence[Message]) -> str:
    prompt = next(m.content for m in reversed(messages) if m.role == "user")
    found = re.search(r"Words that stand out: (.*)", prompt)
    if not found:
        return "fake: " + messages[-1].content[:80]
    words = (found.group(1).split(", ") + ["notes", "memories", "days"])[:3]
    answers = {"name": f"{words[0][:1].upper()}{words[0][1:]} and {words[1]}",
               "summary": f"Notes about {words[0]} and {words[2]}.",
               "role": words[0], "description": f"Time spent on {words[0]} and {words[1]}."}
    if "Answer with JSON only" in prompt:
        wanted = json.loads(prompt.rsplit("matching this schema:", 1)[1])["properties"]
        return json.dumps({k: answers.get(k, "") for k in wanted})
    last = prompt.rstrip().splitlines()[-1]
    if last.startswith("Topic"):
        return answers["name"]
    if last.startswith("What the notes"):
        return answers["summary"]
    if "role in this" in last:
        return answers["role"]
    return answers["description"]


def slot_teacher(name: str = "scripted-teacher") -> FakeChatModel:
    return FakeChatModel(name=name, respond=answer_slot)
