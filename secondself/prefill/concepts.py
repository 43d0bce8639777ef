"""What a form field asks for: a small registry of concepts and the matcher that maps a label to one.

The same matcher reads form fields ("Mobile phone number", `emergency_contact_phone`, autocomplete `tel`)
and the labels the person wrote in their memories ("Mobile phone: +351 ..."), so a field and a memory meet
when they name the same concept. A label matches a concept when it contains one of the concept's phrases
and every other word it has belongs to that concept's vocabulary: "Manager email" is *not* the person's
email, "Emergency contact phone" is not their phone, "Relationship status" is not a relationship. Words
such as "previous" or "former" ask for the past ("Previous employer"). Anything else is no concept, and a
field without one can only be filled from a memory that uses the same label.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Concept", "CONCEPTS", "Match", "match_label", "label_key", "tokens", "AUTOCOMPLETE"]


@dataclass(frozen=True)
class Concept:
    """`kind` decides how values are read and normalized (see values.py); `changes`: the value can change
    over a life (an address, an employer), so the newest statement wins; otherwise agreement decides.
    `fact`: the layer-1 predicate that answers it. `about_other`: the value names someone else (a manager),
    so it does not make the text around it be about that person."""

    name: str
    kind: str
    phrases: tuple[str, ...]
    changes: bool = True
    fact: str = ""
    about_other: bool = False


def _c(name: str, kind: str, phrases: str, changes: bool = True, fact: str = "", about_other: bool = False) -> Concept:
    return Concept(name, kind, tuple(p.strip() for p in phrases.split("|")), changes, fact, about_other)


CONCEPTS: dict[str, Concept] = {c.name: c for c in (
    _c("full_name", "person", "name|full name|legal name|full legal name|complete name|name surname", False),
    _c("legal_name", "person", "full name as on passport|full name as shown on passport|name as on passport|"
                               "name as shown on passport|name as in passport|official name", False),
    _c("given_name", "person", "first name|given name|forename|fname|firstname|given names", False),
    _c("family_name", "person", "last name|surname|family name|lname|lastname|family names", False),
    _c("preferred_name", "person", "preferred name|nickname|known as|name you go by|preferred first name|"
                                   "chosen name|call name|name you like to be called|name you prefer to be called|"
                                   "name you prefer|usual name", False),
    _c("pronouns", "pronouns", "pronouns|pronoun|preferred pronouns", False),
    _c("email", "email", "email|email address|mail|contact email|private email|mail address|personal email|"
                         "personal email address|home email"),
    _c("phone", "phone", "phone|telephone|tel|mobile|cell|phone number|mobile number|contact number|mobile phone|"
                         "cell phone|contact phone|telephone number|cellphone|mobile telephone|phone no|personal mobile|mobile phone number|"
                         "personal phone|mobile no"),
    _c("work_email", "email", "work email|work email address|business email|company email|office email"),
    _c("landline", "phone", "landline|home telephone|home phone|landline number|fixed line|home telephone number|"
                            "home phone number|landline telephone"),
    _c("address_since", "date", "date moved to current address|at this address since|moved in|date moved in|"
                                "move in date|living at this address since|at current address since|"
                                "resident at this address since"),
    _c("address", "address", "address|home address|residential address|postal address|mailing address|"
                             "full address|address of residence|residence address|permanent address"),
    _c("street_address", "street", "street address|street|address line 1|address 1|street and number|"
                                   "street name and number|address line|street line 1|line 1|"
                                   "home address line 1|address line one|first line of address"),
    _c("postal_code", "postcode", "postcode|postal code|zip|zip code|post code|zipcode|postal"),
    _c("city", "city", "city|town|locality|city of residence|town city|municipality|city town"),
    _c("region", "region", "state|province|region|county|state province"),
    _c("country", "country", "country|country of residence|country name|residence country"),
    _c("date_of_birth", "date", "date of birth|birth date|birthday|dob|birthdate|born on", False),
    _c("place_of_birth", "place", "place of birth|birth place|birthplace|city of birth|born in|"
                                  "town of birth", False),
    _c("nationality", "nationality", "nationality|citizenship|citizen of|nationalities"),
    _c("employer", "org", "employer|company|organization|organisation|company name|employer name|"
                          "organization name|organisation name|workplace|employing company|employer company",
       fact="works_at"),
    _c("job_title", "title", "job title|position|role|occupation|profession|job|designation|position title|"
                             "job role|job position|current position|title of position", fact="job_title"),
    _c("start_date", "date", "start date|starting date|employment start date|date started|joining date|employed since|"
                             "in post since|employment start|working here since|"
                             "date of joining|first day|first working day|first day of work|start of employment"),
    _c("manager", "person", "manager|line manager|supervisor|reports to|reporting to|manager name|boss|"
                            "direct manager|reporting manager|supervisor name|report to|line manager name",
       fact="manager", about_other=True),
    _c("salary", "number", "salary|base salary|annual salary|gross salary|gross annual salary|yearly salary|"
                           "annual gross salary|base pay|salary gross per year|salary per year|"
                           "gross annual income|annual income|gross income|income|annual gross income"),
    _c("education", "text", "education|degree|highest degree|qualification|highest qualification|"
                            "academic degree|highest level of education|education background|studies", False,
       fact="studied_at"),
    _c("languages", "list", "languages|languages spoken|spoken languages|language skills|language|"
                            "languages you speak|languages known", False),
    _c("diet", "diet", "dietary restrictions|dietary restriction|dietary requirements|dietary requirement|diet|"
                       "dietary preferences|dietary preference|dietary needs|food preferences|meal preference|"
                       "dietary|special dietary needs|special dietary requirements|special diet|"
                       "dietary needs"),
    _c("allergies", "list", "allergies|allergy|known allergies|drug allergies|medication allergies|"
                            "allergic to|allergies on file|any allergies"),
    _c("emergency_contact_name", "person", "emergency contact|emergency contact name|emergency contact person|"
                                           "emergency name|in case of emergency|next of kin|next of kin name|"
                                           "next of kin full name", about_other=True),
    _c("emergency_contact_phone", "phone", "emergency contact phone|emergency phone|emergency contact number|"
                                           "emergency contact telephone|emergency contact mobile|emergency number|"
                                           "emergency contact phone number|emergency telephone|"
                                           "next of kin phone|next of kin telephone|next of kin mobile|"
                                           "next of kin phone number|next of kin telephone number", about_other=True),
    _c("emergency_contact_relation", "relation", "emergency contact relationship|emergency contact relation|"
                                                 "relationship to emergency contact|emergency relationship|"
                                                 "relationship|relationship to you|relation|relationship to|"
                                                 "next of kin relationship|next of kin relationship to you|"
                                                 "next of kin relation",
       about_other=True),
    _c("emergency_contact_email", "email", "emergency contact email|emergency email|emergency contact e mail",
       about_other=True),
    _c("partner", "person", "partner|spouse|partner name|spouse name|significant other|partner s name|"
                            "husband|wife|boyfriend|girlfriend|civil partner|spouse civil partner|"
                            "spouse partner|partner spouse", fact="partner", about_other=True),
    _c("shirt_size", "size", "t shirt size|tshirt size|shirt size|hoodie size|t shirt|tshirt|clothing size|"
                             "t shirt hoodie size|kit size"),
    _c("hobbies", "list", "hobbies|interests|hobbies and interests|leisure activities|pastimes|hobby", False),
    _c("instrument", "text", "instrument|musical instrument|instrument played|instruments", False),
    # Identifiers: only ever filled from a memory that writes them down with their label.
    _c("passport_number", "id", "passport number|passport no|passport|passport id", False),
    _c("national_id", "id", "national id|id number|identity card number|national identity number|id card|"
                            "national insurance number|national insurance|ni number|ni no", False),
    _c("tax_id", "id", "tax number|tax id|tax identification number|nif|tin|vat number|ssn|social security number|"
                       "social security", False),
    _c("bank_account", "id", "iban|bank account|account number|bank account number"),
    _c("vehicle_registration", "id", "car registration|license plate|licence plate|vehicle registration|"
                                     "number plate|registration number|car plate|plate number"),
    _c("drivers_license", "id", "driving licence number|driver s license number|driving license|driver license|"
                                "drivers license|driving licence"),
    _c("blood_type", "id", "blood type|blood group", False),
    _c("gender", "text", "gender|sex", False),
)}

# HTML autocomplete field tokens (the last significant token of the attribute) → concept.
AUTOCOMPLETE = {
    "name": "full_name", "given-name": "given_name", "family-name": "family_name", "nickname": "preferred_name",
    "email": "email", "tel": "phone", "tel-national": "phone", "street-address": "street_address",
    "address-line1": "street_address", "postal-code": "postal_code", "address-level2": "city",
    "address-level1": "region", "country-name": "country", "country": "country", "bday": "date_of_birth",
    "home tel": "landline", "home tel-national": "landline", "work email": "work_email",
    "organization": "employer", "organization-title": "job_title", "sex": "gender",
}
# Autocomplete tokens that never name a field on their own (section-*, shipping, home, ...).
_AC_QUALIFIERS = {"shipping", "billing", "home", "work", "mobile", "fax", "pager", "on", "off"}

FILLER = frozenset("""your my the a an of in for please enter current currently present new personal primary main own s
is what who applicant employee candidate you are do does and or with here optional required e g i me our will
your's yours""".split())
_PAST = frozenset({"previous", "former", "prior", "past", "old", "earlier", "ex"})


def tokens(text: str) -> list[str]:
    """Words of a label or field name: camelCase, snake_case and kebab-case split; accents dropped."""
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", text or "")
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    s = re.sub(r"\be[\s_-]?mail\b", "email", s)
    return re.findall(r"[a-z0-9]+", s)


def _key(words: list[str] | tuple[str, ...]) -> frozenset[str]:
    return frozenset(w for w in words if w not in FILLER)


_PHRASES: list[tuple[frozenset[str], str]] = sorted(
    ((_key(tokens(p)), c.name) for c in CONCEPTS.values() for p in c.phrases), key=lambda x: -len(x[0]))
_VOCAB: dict[str, frozenset[str]] = {
    c.name: frozenset(w for p in c.phrases for w in _key(tokens(p))) for c in CONCEPTS.values()}


@dataclass(frozen=True)
class Match:
    concept: str
    past: bool          # the label asks for a past value ("Previous employer")
    size: int           # words of the phrase that matched (more = more specific)


def label_key(text: str) -> frozenset[str]:
    """The words that carry a label's meaning (for matching a field to a memory's label exactly)."""
    return _key(tokens(text))


# Words that make a parenthesis be about someone else: "Phone (emergency contact)" is not the person's phone.
_OTHERS = frozenset("""emergency contact kin manager supervisor boss partner spouse landlord parent mother father
child guardian referee reference company employer work business office""".split())


@lru_cache(maxsize=8192)
def match_label(text: str, *, loose: bool = False) -> Match | None:
    """The concept a label names, or None; a parenthesis that only explains the layout or the source of the
    value ("Date of birth (DD/MM/YYYY)", "Full name (as shown on passport)") is ignored when needed."""
    hit = _match_label(text, loose)
    if hit is None and "(" in text:
        bare = re.sub(r"\([^)]*\)?", " ", text)
        paren = " ".join(re.findall(r"\(([^)]*)\)?", text))
        if bare.strip() and not set(tokens(paren)) & _OTHERS:
            hit = _match_label(bare, loose)
    return hit


def _match_label(text: str, loose: bool) -> Match | None:
    """The concept a label names, or None. `loose` (for descriptions, which are sentences): the longest
    phrase found anywhere wins unless another concept's phrase is as long, and other words are allowed."""
    words = _key(tokens(text))
    past = bool(words & _PAST) or ("last" in words and not words & {"name", "names"})
    if past:
        words = words - _PAST - {"last"}
    if not words:
        return None
    best: list[tuple[int, str]] = []
    for phrase, concept in _PHRASES:
        if not phrase or not phrase <= words:
            continue
        if not loose and not words - phrase <= _VOCAB[concept]:
            continue
        best.append((len(phrase), concept))
    if not best:
        return None
    top = max(n for n, _ in best)
    winners = {c for n, c in best if n == top}
    if len(winners) != 1:
        return None
    concept = winners.pop()
    if loose:
        # a description naming two concepts ("your manager's email") is not trusted for either
        others = {c for n, c in best if c != concept and not (_VOCAB[c] <= _VOCAB[concept])}
        if others:
            return None
    return Match(concept, past, top)
