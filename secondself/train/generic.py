"""Retention data: what the base model already does well, so personal fine-tuning does not erase it.

`retention_examples` asks the base model itself (greedy) for answers to `GENERIC_PROMPTS`; training on its
own answers alongside the personal data anchors general behaviour (a cheap form of replay). The separate
`RETENTION_HELDOUT` prompts are never trained on: evaluation compares the tuned model's answers on them with
the base model's. `GENERIC_TEXT` is encyclopedic prose about nothing personal, for measuring
bits-per-byte before and after training.

Limits: a few dozen prompts only show gross forgetting; the base model's answers are kept as they are,
mistakes included (the point is to keep its behaviour, not to improve it). An empty answer is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backends.chat import ChatModel, Message, Sampling, complete
from ..types import TrainingExample

__all__ = ["GENERIC_PROMPTS", "RETENTION_HELDOUT", "GENERIC_TEXT", "retention_examples"]

GENERIC_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "What is the capital of Japan?",
    "What is 12 plus 30?",
    "What is 7 times 8?",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "Name three primary colours.",
    "How many days are there in a leap year?",
    "What is the boiling point of water in degrees Celsius?",
    "Translate 'good morning' into French.",
    "Give me a synonym for 'happy'.",
    "What is the largest planet in the solar system?",
    "Who wrote 'Romeo and Juliet'?",
    "What does a thermometer measure?",
    "List the days of the week.",
    "Explain what a noun is in one sentence.",
    "What is the opposite of 'cold'?",
    "How many continents are there?",
    "Suggest a name for a friendly cat.",
    "What gas do humans need to breathe?",
    "Write one sentence about autumn.",
    "What is the square root of 81?",
    "Why is the sky blue? Answer briefly.",
    "Give one tip for sleeping better.",
)

RETENTION_HELDOUT: tuple[str, ...] = (
    "What is the capital of Italy?",
    "What is 9 plus 15?",
    "Write a haiku about snow.",
    "Explain gravity in one sentence.",
    "Who painted the Mona Lisa?",
    "How many legs does a spider have?",
    "What is the freezing point of water in degrees Celsius?",
    "Give me a synonym for 'big'.",
)


def retention_examples(model: ChatModel, prompts: Sequence[str] = GENERIC_PROMPTS,
                       max_tokens: int = 64) -> list[TrainingExample]:
    """The base model's own greedy answers to `prompts`, as kind "retention" training examples."""
    out = []
    for p in prompts:
        text = complete(model, [Message("user", p)], Sampling(temperature=0.0, max_tokens=max_tokens)).text().strip()
        if text:
            out.append(TrainingExample("retention", (("user", p),), text, (), "train"))
    return out


GENERIC_TEXT = """\
The water cycle describes how water moves between the oceans, the air and the land. Heat from the sun \
evaporates water from seas, lakes and rivers, and plants release more of it through their leaves. The \
vapour rises, cools and condenses into tiny droplets that gather as clouds. When the droplets grow heavy \
enough they fall as rain, snow or hail. Some of that water runs off into streams and rivers, some soaks \
into the ground and refills underground stores called aquifers, and some is taken up again by plants. \
Over long periods the same water may pass through this cycle many thousands of times.

The human heart is a muscular pump about the size of a closed fist. It has four chambers: two upper \
atria that receive blood and two lower ventricles that push it out. The right side sends blood to the \
lungs, where it picks up oxygen and releases carbon dioxide; the left side pumps the oxygen-rich blood \
through the arteries to the rest of the body. Valves between the chambers keep the flow moving in one \
direction, and their closing makes the familiar sound of a heartbeat. At rest an adult heart beats \
roughly sixty to one hundred times a minute.

The printing press, developed in Europe in the middle of the fifteenth century, changed how knowledge \
spread. Before it, books were copied by hand, which made them rare and expensive. Movable metal type \
allowed a workshop to print hundreds of identical pages in the time a scribe needed for a few. Within \
fifty years printers were working in many cities, and pamphlets, calendars and textbooks became common. \
Historians link the press to the growth of literacy, to faster exchange of scientific ideas and to the \
standardisation of spelling in several languages.

Volcanoes form where molten rock from inside the earth reaches the surface. Most of them lie along the \
edges of tectonic plates, either where plates pull apart, as in the middle of the Atlantic Ocean, or \
where one plate slides beneath another, as around much of the Pacific. Others sit above hot spots far \
from any plate boundary. An eruption may be gentle, with lava flowing slowly down the slopes, or \
explosive, throwing ash high into the atmosphere. Volcanic soil is often very fertile, which is one \
reason people continue to farm on the slopes of active volcanoes despite the risk.

Honeybees live in colonies that can hold tens of thousands of individuals. A single queen lays the \
eggs, male drones exist mainly to mate, and female workers do almost everything else: they clean the \
hive, feed the young, build wax comb, guard the entrance and gather nectar and pollen. Foragers share \
the location of good flowers with a waggle dance whose angle and length describe direction and \
distance. By carrying pollen from flower to flower, bees help many crops and wild plants to produce \
seeds and fruit.

A library is more than a room full of books. Public libraries lend novels, music and films, offer \
quiet places to study, give free access to computers and the internet, and run reading groups and \
classes for children and adults. Librarians help people find reliable information and teach them how \
to judge sources. Many libraries also keep local archives, such as old newspapers, maps and \
photographs, that record the history of a town and would otherwise be lost.
"""
