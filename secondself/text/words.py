"""English words that say nothing on their own, and the particles inside people's names.

One base set, `STOPWORDS`: the function words of English (pronouns, determiners, auxiliary verbs,
prepositions, conjunctions, question words), lowercase, as `str.casefold()` or `str.lower()` gives them.
Each use that needs more (or less) gets a named variant built from it here, never its own copy:

- `QUERY_STOPWORDS` (search terms, `memory/search.query_terms`): the base plus the words of a question about
  the memories themselves ("what do your memories say about", "do you remember"). Time and order words stay
  query terms, since "my first job" or "last week" is what the question is about.
- `NAME_STOPWORDS` (trimming names and alias candidates, `memory/observe`, `memory/entities`): the base plus
  the words that start sentences and headers but never name a person, place or organization on their own —
  time words, weekdays, months, seasons, greetings, titles ("Dr"), mail and note headers ("Fwd", "Todo").
  "will" is left out: it is a modal verb and a first name ("Will and I started dating").
- `TOPIC_STOPWORDS` (keywords that name a topic, `memory/topics`): the base plus time words, greetings and
  the everyday verbs, adjectives and adverbs that occur in any life writing and name no topic ("got", "nice").
  Weekdays, months, seasons, "weekend", "afternoon" and "night" stay: "Thursday rehearsals", "summer
  festival", "weekend trips" and "night shifts" name topics.

`PARTICLE` is the regular expression (a non-capturing group, case-sensitive) of the lowercase particles that
join the parts of a name: "Ana Sofia de la Cruz", "Joost van den Berg", "Ortega y Gasset", "Gerard ter Horst".
"""

from __future__ import annotations

__all__ = ["STOPWORDS", "QUERY_STOPWORDS", "NAME_STOPWORDS", "TOPIC_STOPWORDS", "NAME_PARTICLES", "PARTICLE"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _words("""
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves i'm i've i'd i'll it's
anyone anybody anything everyone everybody everything someone somebody something nobody nothing
a an the this that these those all both each every any some no another other such
am is are was were be been being have has had having do does did doing will would can could shall should might
must cannot
about above after against among around as at before below between by during for from in into of off on onto out
over since through to under until upon with within without
and or but so if than then because though although while whether however nor
what when where which who whom whose why how
also not here there too very
""")
# "may" is no base word: it is a month ("in May") as well as a modal verb, so only NAME_STOPWORDS has it.

_TIME = _words("today tonight yesterday tomorrow now morning evening day days week month year years time")
_COUNTING = _words("one two three first last next new old")
_GREETINGS = _words("dear hi hello hey thanks thank yes ok okay maybe")
_CALENDAR = _words("""
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
september october november december spring summer autumn fall winter christmas easter weekend afternoon night
""")
_TITLES = _words("mr mrs ms dr prof")
_HEADERS = _words("update note notes todo re fwd subject sent date")
_EVERYDAY = _words("""
again always back bit came come done down even ever feel felt get gets getting going gone good got just know
let like little long lot lots made make many more most much need never nice once only own people person really
right said same says see still sure take thing things think told want way well went yet
tell tells telling ask asks asked asking
""")

# the words of a question about the memories themselves ("What do your memories say about X?", "Do you
# remember X?"): a memory rarely holds them, so as terms they only lower a question's coverage
_ABOUT_MEMORY = _words("memories memory remember recall say says tell know notes")

QUERY_STOPWORDS = STOPWORDS | _ABOUT_MEMORY
NAME_STOPWORDS = (STOPWORDS - {"will"}) | _TIME | _COUNTING | _GREETINGS | _CALENDAR | _TITLES | _HEADERS
TOPIC_STOPWORDS = STOPWORDS | _TIME | _COUNTING | _GREETINGS | _EVERYDAY

NAME_PARTICLES = ("de", "da", "do", "dos", "das", "del", "della", "di", "du", "van", "von", "der", "den", "la", "le",
                  "al", "bin", "ben", "ter", "ten", "y", "e")
PARTICLE = "(?:" + "|".join(NAME_PARTICLES) + ")"
