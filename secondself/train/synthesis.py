"""Training data for the personal model, built from layer 1 (profile) and layer 0 (chunks) without a model.

The boundary: this module turns a `Profile` and its chunks into `TrainingExample`s; it knows nothing about
tokenizers or training. The embedded teacher cannot write good questions or JSON, so the structure is ours:
question templates per predicate, answers composed from facts, entities and shade events, and extractive
sentences from the person's own writing. Every candidate cites the chunks it was made from and is then
checked with `unsupported_specifics` against their text plus the fact fields (and the dates we rendered
from them); a candidate that fails is dropped and counted, never trained.

Kinds: self_qa, preference_qa, people, events, enhance, critic (templates in `templates.py`);
unanswerable (fixed personal questions whose search terms occur in no chunk -> IDK) and notes (the person's
own text: notes whole, their chat turns, mail they sent; never web pages or documents) are built here.

The recipe (issue 13): each fact, event, preference and relation is asked in several wordings, and
every second-person question also as the person would ask it ("Where do I live?", `paraphrase.as_self`);
answers are short and grounded; raw notes are capped at `notes_share` of the trained words (they taught
the register, not the facts). The split (`split.py`) holds out some wordings of every trained answer (the
recall test) and whole fact groups that no training item mentions ("unseen": the guessing test).

Limits: English templates; answers are as good as the facts and shades (with the hashing embedder shade
names are keyword pairs). "When did you ...?" questions only come from sentences whose verb is in a small
past-tense table.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..memory.observe import is_person, norm, person_units
from ..persona import IDK
from ..text.grounding import unsupported_specifics
from ..types import Chunk, Profile, TrainingExample
from . import templates as t
from .paraphrase import as_self
from .split import groups, split
from .templates import Candidate

__all__ = ["SynthesisReport", "synthesize", "KINDS", "SPLITS"]

KINDS = ("self_qa", "preference_qa", "people", "events", "unanswerable", "enhance", "critic", "notes")
SPLITS = ("train", "heldout", "valid", "unseen")


@dataclass
class SynthesisReport:
    """`examples` in a stable order; `groups[i]` is the held-out group of `examples[i]` and `keys[i]` the
    items it is made of (for audits: an unseen group's items never appear in a training example)."""

    examples: list[TrainingExample]
    counts: dict[str, dict[str, int]]
    dropped: dict[str, int]
    groups: list[str] = field(default_factory=list)
    keys: list[tuple[str, ...]] = field(default_factory=list)


def synthesize(profile: Profile, chunks: Mapping[int, Chunk], person: str, *, seed: int = 0,
               heldout: float = 0.2, unseen: float = 0.15, notes_share: float = 0.25, max_words: int = 120,
               system: str | None = None, epochs: float = 1.0) -> SynthesisReport:
    """All kinds, support-checked, deduplicated, length-limited and split. Deterministic for a seed.

    `heldout`: share of the wordings of each trained answer (and of the other kinds' groups) held out;
    `unseen`: share of fact groups held out whole; `notes_share`: at most this share of the words of the
    training answers are raw notes (the rest of the notes are left out, counted as "notes_capped");
    `epochs`: passes over the other items per pass over the notes (`train` trains notes once over the run and
    the rest every epoch), so the share holds over the whole run."""
    system = system or f"You are {person}. Answer as {person}, in the first person, from your own memories."
    as_of = profile.status.as_of
    mine = [f for f in profile.facts if is_person(f.subject, person) or norm(f.subject) == norm(person)]
    dropped: dict[str, int] = defaultdict(int)
    cands: list[Candidate] = []
    cands += t.self_qa(mine, system, as_of)
    cands += t.people(profile, mine, person, system, chunks)
    events, by_day = _own_events(profile, chunks, person)
    cands += t.events(by_day, system)
    cands += t.preferences(profile, events, system, as_of, max_words)
    cands += _unanswerable(chunks.values(), system, dropped)
    cands = _with_own_wordings(cands)
    current = [f for f in mine if f.valid_to is None or (as_of is not None and f.valid_to >= as_of)]
    cands += t.enhance(current, person, dropped)
    cands += t.critic(mine, current, person)
    cands += _notes(chunks, person, max_words)

    kept = _check(cands, chunks, max_words, dropped)
    sides, _, quarantine = split(kept, seed, heldout, unseen, person)
    # "Tell me about yourself" restates many facts at once, so it is built after the split, from the
    # facts whose wordings are trained on (and that leak nothing unseen), and is always trained on.
    trained = {k for c, s in zip(kept, sides, strict=True) if s == "train" and c.kind == "self_qa" for k in c.keys}
    unseen_keys = {k for c, s in zip(kept, sides, strict=True) if s == "unseen" for k in c.keys}
    intro = [c for c in _check(t.intro([f for f in current if f"fact:{f.id}" in trained - unseen_keys], system),
                               chunks, max_words, dropped) if not quarantine.blocks(c)]
    kept += intro
    sides += ["train"] * len(intro)
    sides = _cap_notes(kept, sides, notes_share, seed, epochs)
    for s in sides:
        if s not in SPLITS:
            dropped[s] += 1
    keep = [i for i, s in enumerate(sides) if s in SPLITS]
    kept, sides = [kept[i] for i in keep], [sides[i] for i in keep]
    names = groups(kept)
    examples = [TrainingExample(c.kind, c.prompt, c.completion, c.sources, s) for c, s in zip(kept, sides, strict=True)]
    counts: dict[str, dict[str, int]] = {k: {s: 0 for s in SPLITS} for k in KINDS}
    for e in examples:
        counts.setdefault(e.kind, {s: 0 for s in SPLITS})[e.split] += 1
    return SynthesisReport(examples, counts, dict(dropped), names, [c.keys for c in kept])


def _with_own_wordings(cands: list[Candidate]) -> list[Candidate]:
    """Every question also as the person asks it about themselves (same answer, same items)."""
    out: list[Candidate] = []
    for c in cands:
        out.append(c)
        question = c.prompt[-1][1] if c.prompt and c.prompt[-1][0] == "user" else ""
        own = as_self(question) if question else None
        if own:
            out.append(replace(c, prompt=(*c.prompt[:-1], ("user", own))))
    return out


def _cap_notes(cands: Sequence[Candidate], sides: list[str], share: float, seed: int,
               epochs: float = 1.0) -> list[str]:
    """Raw notes are at most `share` of the words the training items teach (notes are long: capped by
    count, they were still half of the supervised tokens): a seeded sample of them is kept. The other items
    count `epochs` times (trained that many times per pass over the notes)."""
    notes = [i for i, (c, s) in enumerate(zip(cands, sides, strict=True)) if c.kind == "notes" and s == "train"]
    others = epochs * sum(len(c.completion.split()) for c, s in zip(cands, sides, strict=True)
                          if c.kind != "notes" and s == "train")
    limit = share / (1 - share) * others if share < 1 else float("inf")
    # ranked by content, so that the same note stays in (or out) when other notes come and go
    ranked = sorted(notes, key=lambda i: hashlib.sha1(f"{seed}|notes|{cands[i].completion}".encode()).hexdigest())
    out, words = list(sides), 0
    for i in ranked:
        words += len(cands[i].completion.split())
        if words > limit:
            out[i] = "notes_capped"
    return out


# -- the person's own events and notes ---------------------------------------------------------------

_ELLIPSIS = re.compile(r"\s*…$")


def _own_events(profile: Profile, chunks: Mapping[int, Chunk], person: str
                ) -> tuple[dict[str, list[tuple[str, str, tuple[int, ...]]]], dict[str, list[tuple[str, tuple[int, ...]]]]]:
    """Shade timeline events whose sentence the person wrote (not a document, web page or someone else's
    turn), with the full sentence restored where the timeline cut it. Returns (per shade name:
    [(date, sentence, sources)], per day: [(sentence, sources)])."""
    per_shade: dict[str, list[tuple[str, str, tuple[int, ...]]]] = {}
    by_day: dict[str, list[tuple[str, tuple[int, ...]]]] = defaultdict(list)
    for shade in profile.shades:
        out = []
        for e in shade.timeline:
            first = chunks.get(e.sources[0]) if e.sources else None
            if first is None or first.kind in ("web", "document"):
                continue
            head = norm(_ELLIPSIS.sub("", e.text))
            own = [s for s, _, _ in person_units(first, person)]
            full = next((s for s in own if norm(s).startswith(head) or head.startswith(norm(s))), None)
            if not full or not 4 <= len(full.split()) <= 45 or full.rstrip()[-1:] not in ".!" \
                    or full.count('"') % 2 or full.count("“") != full.count("”"):
                continue
            out.append((e.date, full.strip(), (first.id,)))
            if all(norm(full) != norm(s) for s, _ in by_day[e.date]):
                by_day[e.date].append((full.strip(), (first.id,)))
        per_shade[shade.name] = out
    return per_shade, dict(by_day)


_SIGNATURE = re.compile(r"\n--\s*\n.*", re.S)
_QUOTE_HEAD = re.compile(r"^On .{5,120} wrote:\s*$", re.M)


def _own_text(chunk: Chunk, person: str) -> str:
    """What the person wrote in `chunk`: a note whole, their own chat turns, the body of mail they sent."""
    if chunk.kind == "note":
        return chunk.text
    if chunk.kind == "email":
        if not (chunk.speakers and is_person(chunk.speakers[0], person)):
            return ""
        body = _SIGNATURE.sub("", chunk.text)
        body = _QUOTE_HEAD.split(body)[0]
        return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith(">"))
    if chunk.kind == "chat":
        turns: list[str] = []
        speaker = None
        for line in chunk.text.splitlines():
            who = next((s for s in chunk.speakers if line.startswith(s + ":")), None)
            if who is not None:
                speaker, line = who, line[len(who) + 1:].strip()
                if is_person(who, person):
                    turns.append(line)
                continue
            if speaker is not None and is_person(speaker, person) and turns:
                turns[-1] += "\n" + line
        return "\n\n".join(turns)
    return ""


def _pieces(text: str, max_words: int) -> list[str]:
    """`text` in pieces of at most `max_words`, broken between sentences; line and paragraph breaks are
    kept. A single sentence longer than `max_words` is left out."""
    units: list[tuple[str, str]] = []          # (sentence, the separator before it)
    for p, para in enumerate(re.split(r"\n\s*\n", text)):
        for li, line in enumerate(ln for ln in para.splitlines() if ln.strip()):
            for si, sent in enumerate(re.split(r"(?<=[.!?])\s+(?=\S)", line.strip())):
                units.append((sent, " " if si else "\n" if li else "\n\n" if p else ""))
    out, cur, n = [], "", 0
    for sent, sep in units:
        w = len(sent.split())
        if w > max_words:
            continue
        if cur and n + w > max_words:
            out.append(cur)
            cur, n = "", 0
        cur, n = (cur + sep + sent if cur else sent), n + w
    if cur:
        out.append(cur)
    return out


def _notes(chunks: Mapping[int, Chunk], person: str, max_words: int) -> list[Candidate]:
    out = []
    for cid in sorted(chunks):
        text = _own_text(chunks[cid], person)
        text = re.sub(r"[ \t]+\n", "\n", re.sub(r"\n{3,}", "\n\n", text)).strip()
        for piece in _pieces(text, max_words) if len(text.split()) >= 8 else []:
            out.append(Candidate("notes", (), piece, (cid,), (f"chunk:{cid}",)))
    return out


# -- unanswerable ----------------------------------------------------------------------------------------------

_UNKNOWN: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("What is your blood type?", "Which blood group are you?"), ("blood",)),
    (("What's your favourite football club?", "Which football team do you support?"), ("football", "soccer")),
    (("What car do you drive?", "What model is your car?"), ("car", "cars", "driving", "driver")),
    (("What is your dog's name?", "Do you have a cat?"), ("dog", "dogs", "cat", "cats", "puppy", "pet", "pets")),
    (("What's your shoe size?",), ("shoe", "shoes", "shoe size")),
    (("What is your favourite film?", "Which movie do you like best?"), ("film", "films", "movie", "movies", "cinema")),
    (("What religion are you?", "Do you go to church?"), ("religion", "religious", "church", "faith")),
    (("Which political party do you vote for?",), ("political", "politics", "vote", "election")),
    (("What is your star sign?",), ("zodiac", "star sign", "horoscope")),
    (("What was the name of your primary school?",), ("primary school", "elementary school")),
    (("How many children do you have?", "What are your kids' names?"), ("children", "kids", "son", "daughter")),
    (("What is your favourite video game?",), ("video game", "gaming", "playstation", "xbox", "nintendo")),
    (("Do you have any tattoos?",), ("tattoo", "tattoos")),
    (("What is your favourite colour?",), ("colour", "color", "favourite colour")),
    (("Have you ever been to Australia?",), ("australia", "sydney", "melbourne")),
    (("What TV series are you watching?",), ("tv", "television", "netflix", "series")),
    (("Can you swim?", "Do you go swimming?"), ("swim", "swimming", "pool")),
    (("When did you get married?", "What is your husband's name?"), ("married", "wedding", "husband", "wife")),
    (("What's your favourite pizza topping?",), ("pizza",)),
    (("Do you play the piano?",), ("piano",)),
    (("Do you like skiing?",), ("ski", "skiing", "snowboard")),
    (("What is your favourite board game?",), ("board game", "chess", "monopoly")),
    (("What is your favourite band?", "Which singer do you listen to most?"), ("band", "singer", "album")),
    (("Are you allergic to anything?", "Do you have any allergies?"), ("allergy", "allergic", "allergies")),
    (("What is your favourite football player?",), ("football", "soccer", "player")),
    (("Have you ever run a marathon?",), ("marathon",)),
    (("What's your favourite ice cream flavour?",), ("ice cream", "gelato")),
    (("Do you own a motorbike?",), ("motorbike", "motorcycle", "scooter")),
    (("What's your favourite holiday destination in Asia?",), ("asia", "thailand", "bali", "vietnam", "china")),
    (("Which languages did you study at school?",), ("school",)),
    (("What is your middle name?",), ("middle name",)),
    (("How tall are you?", "What is your height?"), ("tall", "height")),
    (("What is your phone number?",), ("phone number", "mobile number")),
    (("What was your first job?", "Where did you work when you were a student?"), ("first job", "student job")),
    (("What is your grandmother's name?",), ("grandmother", "grandma", "granny")),
    (("Have you ever broken a bone?",), ("broken", "fracture", "cast")),
    (("Do you play golf?",), ("golf",)),
    (("Do you speak Japanese?",), ("japanese", "japan", "tokyo")),
    (("Have you ever been to Canada?",), ("canada", "toronto", "vancouver", "montreal")),
    (("Have you been to South America?", "Which country in South America did you visit?"),
     ("south america", "brazil", "argentina", "peru", "chile", "colombia")),
    (("Do you play tennis?",), ("tennis",)),
    (("Which bank are you with?",), ("bank", "banking")),
    (("In which hospital were you born?",), ("hospital", "born")),
    (("Can you knit?", "Do you sew your own clothes?"), ("knit", "knitting", "sew", "sewing")),
    (("Have you ever been skydiving?",), ("skydiving", "parachute")),
    (("Do you own a boat?",), ("boat", "sailing", "sailboat")),
    (("What is your favourite museum?",), ("museum", "museums")),
    (("Do you play poker?",), ("poker", "casino")),
    (("What is your favourite cocktail?",), ("cocktail", "cocktails")),
    (("Do you ride horses?",), ("horse", "horses", "riding")),
    (("What is your Wi-Fi password?",), ("password", "wi-fi", "wifi")),
    (("What did your grandfather do for a living?",), ("grandfather", "grandpa")),
    (("Who is your dentist?",), ("dentist",)),
    (("Which podcast do you listen to?",), ("podcast", "podcasts")),
    (("Do you do yoga?",), ("yoga",)),
    (("Did you ever live in Germany?",), ("germany", "berlin", "munich", "hamburg")),
    (("How much do you weigh?",), ("weigh", "weight")),
    (("What is your favourite cheese?",), ("cheese",)),
    (("Have you ever met a celebrity?",), ("celebrity", "famous")),
    (("Which gym do you go to?",), ("gym",)),
    (("What is your favourite bird?",), ("bird", "birds")),
    (("How old was your first car?",), ("car", "cars")),
    (("Who was your best friend at school?",), ("school", "best friend")),
    (("Where did you spend Christmas in 2010?",), ("2010",)),
)


def _unanswerable(chunks: Iterable[Chunk], system: str, dropped: dict[str, int]) -> list[Candidate]:
    """Plausible personal questions whose search terms occur in no chunk -> IDK. A question whose terms do
    occur is skipped (counted as "answerable"): the memories might hold its answer."""
    corpus = "\n".join(f"{c.title}\n{c.heading}\n{c.text}" for c in chunks).casefold()
    out: list[Candidate] = []
    for i, (questions, terms) in enumerate(_UNKNOWN):
        if any(re.search(rf"\b{re.escape(t)}\b", corpus) for t in terms):
            dropped["answerable"] = dropped.get("answerable", 0) + 1
            continue
        out += [Candidate("unanswerable", (("system", system), ("user", q)), IDK, (), (f"unknown:{i}",))
                for q in questions]
    return out


# -- checks, dedup, split ------------------------------------------------------------------------------

def _evidence(c: Candidate, chunks: Mapping[int, Chunk]) -> str:
    """The cited chunks, the extra evidence, and the user's own words (a rewrite may repeat them)."""
    parts = [c.extra, *(text for role, text in c.prompt if role == "user")]
    for i in c.sources:
        ch = chunks.get(i)
        if ch is not None:
            parts += [ch.title, ch.heading, ch.text]
    return "\n".join(parts)


def _dedup_key(c: Candidate) -> str:
    return norm(" ".join(t for _, t in c.prompt) + " || " + c.completion)


def _check(cands: Sequence[Candidate], chunks: Mapping[int, Chunk], max_words: int,
           dropped: dict[str, int]) -> list[Candidate]:
    kept, seen = [], set()
    for c in cands:
        reason = ("empty" if not c.completion.strip() else
                  "too_long" if len(c.completion.split()) > max_words else
                  "uncited" if c.kind != "unanswerable" and not c.sources else
                  "unsupported" if unsupported_specifics(c.completion, _evidence(c, chunks)) else
                  "duplicate" if _dedup_key(c) in seen else "")
        if reason:
            dropped[reason] += 1
            continue
        seen.add(_dedup_key(c))
        kept.append(c)
    return kept
