"""Lexical cues that make a preference a constraint, grouped by what kind of need it is,
and the domains each kind of need reaches.

A constraint rarely names the domain it matters in: "I use a wheelchair" matters for a
hotel, a kitchen layout and a car; "I'm celiac" for anything eaten. So the domains come
from the kind of need, not from the words of the item, unless the item names them
("my lodging budget", "subtitles on everything I watch": personalization/domains.py,
`named_domains`); then the need adds only its core domains (a diet: food). Cues are
word stems matched on word boundaries, case-insensitively. Written from general
knowledge of allergies, diets, health, accessibility, religion, ethics and budgets;
checked only on the dev split."""

from __future__ import annotations

import re
from dataclasses import dataclass

_FOOD_DOMAINS = ("food", "health", "work")  # work: team lunches, events
_BODY_DOMAINS = ("travel", "lodging", "transport", "fitness", "home", "fashion", "cars", "screen")
_BELIEF_DOMAINS = (
    "food",
    "work",
    "learning",
    "screen",
    "books",
    "fashion",
    "beauty",
    "lodging",
    "travel",
    "technology",
    "cars",
    "transport",
)
_CONTENT_DOMAINS = ("screen", "games", "books", "music")
_MONEY_DOMAINS = (
    "food",
    "travel",
    "lodging",
    "transport",
    "cars",
    "fashion",
    "beauty",
    "home",
    "technology",
    "pets",
    "learning",
    "games",
    "screen",
    "books",
    "fitness",
)


@dataclass(frozen=True, slots=True)
class Need:
    name: str
    cues: re.Pattern[str]
    domains: tuple[str, ...]
    core: tuple[str, ...] = ()  # where it applies even when the text names other domains


def _cues(*stems: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(stems) + r")", re.IGNORECASE)


NEEDS: tuple[Need, ...] = (
    Need(
        "diet",
        _cues(
            r"c[o]?eliac",
            r"gluten",
            r"wheat",
            r"lactose",
            r"dairy",
            r"vegan",
            r"vegetarian",
            r"plant-based",
            r"pescatarian",
            r"halal",
            r"kosher",
            r"pork",
            r"shellfish",
            r"peanut",
            r"tree nut",
            r"nuts\b",
            r"sesame",
            r"fodmap",
            r"purine",
            r"potassium",
            r"sodium",
            r"carbs?\b",
            r"sugar",
            r"diet\b",
            r"meat\b",
            r"eggs?\b",
            r"ramadan",
            r"fasting",
            r"fast during",
            r"alcohol",
            r"don't drink",
            r"gout",
            r"ibs\b",
        ),
        _FOOD_DOMAINS,
        ("food",),
    ),
    Need(
        "body",
        _cues(
            r"wheelchair",
            r"mobility",
            r"scooter",
            r"knee",
            r"(?:bad|lower|my) back\b",
            r"back pain",
            r"spinal",
            r"herniated",
            r"stairs",
            r"osteopor",
            r"arthriti",
            r"injur",
            r"replacement",
        ),
        _BODY_DOMAINS,
        ("travel", "lodging", "transport", "fitness", "home"),
    ),
    Need(
        "hands",
        _cues(r"one hand", r"stroke\b", r"carpal", r"grip", r"tremor"),
        ("games", "technology", "home", "cars", "fitness", "food"),
        ("games", "technology"),
    ),
    Need(
        "vision",
        _cues(
            r"blind",
            r"visually impaired",
            r"screen reader",
            r"voiceover",
            r"colou?rblind",
            r"guide dog",
        ),
        ("technology", "learning", "books", "screen", "games", "travel", "transport"),
        ("technology", "learning"),
    ),
    Need(
        "hearing",
        _cues(
            r"deaf",
            r"hard of hearing",
            r"hearing aid",
            r"captions",
            r"subtitles",
            r"tinnitus",
        ),
        ("screen", "music", "learning", "work", "lodging", "technology", "travel"),
        ("screen", "music"),
    ),
    Need(
        "light",
        _cues(
            r"seizure",
            r"epilep",
            r"photosensitive",
            r"strobe",
            r"flashing",
            r"flicker",
            r"migraine",
            r"fluorescent",
        ),
        ("screen", "games", "music", "technology", "work", "cars"),
        ("screen", "games"),
    ),
    Need(
        "cognition",
        _cues(
            r"dyslex",
            r"dyscalcul",
            r"adhd",
        ),
        ("learning", "work", "books", "finance", "technology"),
        ("learning",),
    ),
    Need(
        "motion",
        _cues(
            r"motion sick",
            r"seasick",
        ),
        ("transport", "travel", "games"),
        ("transport",),
    ),
    Need(
        "fear",
        _cues(
            r"anxiety",
            r"phobia",
            r"terrif",
            r"afraid",
            r"claustrophob",
            r"heights",
            r"panic",
        ),
        ("travel", "transport", "screen", "work", "lodging", "fitness"),
        ("travel",),
    ),
    Need(
        "allergy",
        _cues(
            r"allerg",
            r"anaphyla",
            r"epipen",
            r"rosacea",
            r"eczema",
            r"hives",
            r"fragrance",
            r"latex",
            r"nickel",
            r"retinoid",
        ),
        ("food", "beauty", "home", "pets", "lodging", "fashion", "health"),
        ("health",),
    ),
    Need(
        "condition",
        _cues(
            r"pregnan",
            r"trimester",
            r"asthma",
            r"heart (?:scare|condition|disease|rate|problem|attack)",
            r"cardiolog",
            r"blood (?:pressure|sugar)",
            r"warfarin",
            r"diabet",
            r"immune",
            r"doctor",
            r"surgery",
            r"bypass",
            r"kidney",
        ),
        ("health", "fitness", "food", "travel", "beauty", "pets", "home"),
        ("health", "fitness"),
    ),
    Need(
        "budget",
        _cues(
            r"budget",
            r"afford",
            r"can't (?:spend|pay)",
            r"won't (?:spend|pay)",
            r"spend",
            r"financing",
            r"\$\s?\d",
            r"€\s?\d",
            r"£\s?\d",
            r"\d+\s?(?:dollars|euros|pounds)",
            r"money",
            r"(?:be|is|are) free\b",
            r"limit\b",
        ),
        _MONEY_DOMAINS,
    ),
    Need(
        "belief",
        _cues(
            r"religio",
            r"muslim",
            r"jewish",
            r"christian",
            r"hindu",
            r"shabbat",
            r"sabbath",
            r"sundown",
            r"modest",
            r"cruelty-free",
            r"animal (?:product|testing)",
            r"animal-derived",
            r"fossil",
            r"climate",
            r"fast fashion",
            r"privacy",
            r"open-source",
            r"proprietary",
        ),
        _BELIEF_DOMAINS,
    ),
    Need(
        "family",
        _cues(
            r"kids",
            r"children",
            r"toddler",
            r"baby",
            r"car seats?",
            r"my (?:son|daughter)",
        ),
        ("screen", "games", "music", "books", "home", "cars", "travel", "food"),
        ("screen", "games", "home", "cars"),
    ),
    Need(
        "content",
        _cues(
            r"suicide",
            r"sexual",
            r"nudity",
            r"explicit",
            r"violen",
            r"gambling",
            r"recovery",
            r"alcoholism",
            r"addict",
            r"a trigger",
        ),
        _CONTENT_DOMAINS,
        _CONTENT_DOMAINS,
    ),
    Need(
        "circumstance",
        _cues(
            r"lease",
            r"landlord",
            r"studio",
            r"shifts?\b",
            r"rural",
        ),
        ("home", "pets", "cars", "learning", "technology", "work"),
        ("home", "pets"),
    ),
)

# Hard rules: whatever the topic, a "never"/"won't"/"can't" is not a taste.
HARD_RULE = _cues(
    r"never\b",
    r"won't",
    r"will not",
    r"can't",
    r"cannot",
    r"can not",
    r"not allowed",
    r"refuse",
    r"hard no",
    r"off-limits",
    r"full stop",
    r"period\.?$",
    r"at most",
    r"not a cent",
    r"strict(?:ly)?\b",
    r"must\b",
    r"forbid",
    r"bans?\b",
    r"out for me",
    r"impossible",
)


def needs_of(text: str) -> list[Need]:
    return [need for need in NEEDS if need.cues.search(text)]


def is_hard_rule(text: str) -> bool:
    return HARD_RULE.search(text) is not None
