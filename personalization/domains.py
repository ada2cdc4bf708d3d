"""The everyday domains a preference can apply to, each described by requests a user
might make in it. They are embedded once at start-up (personalization/applicability.py)
and serve both sides: an item's domains are derived from its text at write time, a
turn's domains from the query vector it already has.

Written from general knowledge of what people ask assistants about, not from any
evaluation set; tuned (which requests, how many) only on the dev split."""

from __future__ import annotations

import re
from types import MappingProxyType

# Requests in each domain, varied in wording so that their nearest neighbour, not their
# average, says whether a query belongs: travel questions name cities, food questions
# name dishes, and no single sentence covers them.
_REQUESTS: dict[str, tuple[str, ...]] = {
    "food": (
        "What should I eat for dinner tonight?",
        "Give me a recipe for a quick weeknight meal.",
        "Which local dishes should I try on my trip?",
        "Recommend a restaurant for a birthday dinner.",
        "What should I order at this restaurant?",
        "Plan a food tour through the night markets.",
        "What snacks should I pack?",
        "Suggest a meal plan for the week.",
    ),
    "travel": (
        "What are the top things to do in this city over a weekend?",
        "Plan a three-day itinerary for my trip.",
        "Which sights are worth visiting on a day trip?",
        "Suggest fun activities for a week abroad.",
        "How should we spend four days on holiday?",
        "What should I see on a trip to the coast?",
    ),
    "lodging": (
        "Where should I stay for five nights in London?",
        "Recommend a hotel for a couple.",
        "Which B&B or guesthouse would you book?",
        "Help me pick accommodation near the conference centre.",
        "Find me a place to sleep for the trip.",
    ),
    "transport": (
        "What's the best way to get from the airport to the city centre?",
        "How should I get between these two cities?",
        "How do I get around the city during my stay?",
        "Should I take the train, fly or drive?",
        "Any tips for my long-haul flight?",
        "Plan the route for a road trip.",
    ),
    "cars": (
        "Which car should I buy next?",
        "Recommend a used car for a family.",
        "What's a good commuter car?",
        "Should I lease or buy my next car?",
        "Which motorbike is good for a beginner?",
    ),
    "fitness": (
        "Suggest a workout routine I can do at home.",
        "Plan my training for a half marathon.",
        "What exercises build strength?",
        "Give me a gym plan for the week.",
        "How can I get fitter this year?",
        "Plan a day of hiking for me.",
    ),
    "health": (
        "How can I sleep better?",
        "What can I do about my headaches?",
        "How do I manage stress at work?",
        "Which vitamins or supplements should I take?",
        "What should I ask my doctor at my check-up?",
        "How can I boost my energy during the day?",
    ),
    "beauty": (
        "Recommend a skincare routine.",
        "Which shampoo should I use?",
        "What makeup should I wear for a wedding?",
        "Suggest a new haircut.",
        "What sunscreen should I buy?",
    ),
    "fashion": (
        "What should I wear to a garden party?",
        "Give me outfit ideas for a weekend trip.",
        "Where should I shop for a new outfit?",
        "Which shoes should I buy?",
        "Help me build a capsule wardrobe.",
    ),
    "home": (
        "How should I decorate my living room?",
        "Recommend a sofa or a rug.",
        "What paint colour should I choose for the bedroom?",
        "Help me plan a kitchen renovation.",
        "Which houseplants should I get?",
        "What furniture should I buy for my new apartment?",
        "How do I clean my home faster?",
    ),
    "technology": (
        "Which smartphone should I buy?",
        "What laptop should I get?",
        "Recommend headphones.",
        "What smart-home gadgets are worth it?",
        "Which app should I use for this?",
        "Help me set up my computer.",
    ),
    "pets": (
        "What should I feed my dog?",
        "How do I train my puppy?",
        "Which toys are good for my cat?",
        "How often should my pet see the vet?",
        "What pet should I adopt?",
    ),
    "screen": (
        "Recommend a movie for tonight.",
        "What TV series should I binge next?",
        "Suggest a film for a family movie night.",
        "Which documentary should I watch?",
        "What should I stream this weekend?",
    ),
    "games": (
        "Recommend a video game.",
        "Which board game should we play at the party?",
        "What game should I play on my console?",
        "Suggest a game to play with friends online.",
    ),
    "music": (
        "Make me a playlist for a road trip.",
        "Recommend some albums for a rainy Sunday.",
        "Which concerts or music festivals should I go to?",
        "What music should I listen to while working?",
    ),
    "books": (
        "Recommend a novel for the flight.",
        "What book should I read next?",
        "Suggest an audiobook or a podcast.",
        "Which books should I pick for my book club?",
    ),
    "learning": (
        "How should I start learning statistics?",
        "What's a good way to learn programming?",
        "Recommend a course or resource to learn a language.",
        "Help me study for my exam.",
        "Explain how this works.",
        "How can I learn a new skill quickly?",
    ),
    "work": (
        "Help me plan my work week.",
        "Draft an email to my manager.",
        "How should I prepare for this meeting?",
        "How can I be more productive at work?",
        "Give me feedback on my project plan.",
        "How do I ask for a raise?",
    ),
    "finance": (
        "How should I invest my savings?",
        "Help me make a monthly budget.",
        "Should I pay off debt or save?",
        "How can I save money on groceries?",
    ),
}

# What each domain is about, as a list of its words: a preference is a statement, not a
# request ("I use a wheelchair", "Boutique hotels win for me"), and lands nearer to the
# words of its domain than to requests in it.
_TOPICS: dict[str, str] = {
    "food": "food, eating, meals, dishes, restaurants, cooking, recipes, diet, groceries",
    "travel": "travel, trips, sightseeing, tours, holidays, destinations, things to do abroad",
    "lodging": "hotels, accommodation, where to stay, rooms, B&Bs, guesthouses, rentals",
    "transport": "transport, getting around, flights, trains, buses, driving routes, transfers",
    "cars": "cars, vehicles, driving, buying a car, motorbikes, car dealers",
    "fitness": "fitness, exercise, workouts, training, gym, running, hiking, sport",
    "health": "health, medical conditions, symptoms, medication, doctors, sleep, wellbeing",
    "beauty": "beauty, skincare, makeup, haircare, cosmetics, grooming products",
    "fashion": "fashion, clothes, outfits, shoes, style, what to wear",
    "home": "home, furniture, decor, interior design, renovation, houseplants, cleaning",
    "technology": "technology, gadgets, phones, laptops, computers, devices, software",
    "pets": "pets, dogs, cats, pet food, pet care, vets, adopting an animal",
    "screen": "movies, films, TV shows, series, streaming, theatre, watching",
    "games": "games, video games, board games, gaming, consoles",
    "music": "music, songs, albums, playlists, concerts, listening",
    "books": "books, reading, novels, authors, audiobooks, podcasts",
    "learning": "learning, studying, courses, education, lessons, understanding a subject",
    "work": "work, job, career, colleagues, meetings, emails, office, productivity",
    "finance": "money, finance, investing, saving, budgets, banking, debt",
}

DOMAIN_REQUESTS = MappingProxyType(_REQUESTS)
DOMAIN_TOPICS = MappingProxyType(_TOPICS)
DOMAINS: tuple[str, ...] = tuple(_REQUESTS)

# Words that name a domain outright. A constraint that names where it applies ("my
# lodging budget", "subtitles on everything I watch", "games or in-app purchases")
# applies there, not everywhere its kind of need could reach: a budget for clothes is
# not about hotels. Word stems, matched at the start of a word, case-insensitively.
_WORDS: dict[str, tuple[str, ...]] = {
    "food": (
        r"food",
        r"eat",
        r"meals?\b",
        r"cook",
        r"dish",
        r"restaurant",
        r"snack",
        r"drink",
        r"recipe",
        r"groceri",
        r"menu",
    ),
    "travel": (r"trips?\b", r"travel", r"holiday", r"vacation", r"sightsee", r"tour"),
    "lodging": (r"lodging", r"hotels?\b", r"a night\b", r"per night", r"rooms?\b", r"b&b"),
    "transport": (
        r"flights?\b",
        r"fly",
        r"plane",
        r"trains?\b",
        r"getting around",
        r"transit",
        r"bus(?:es)?\b",
        r"commut",
    ),
    "cars": (r"cars?\b", r"driv", r"vehicle", r"parking", r"charg"),
    "fitness": (r"gym", r"workout", r"exercis", r"training", r"heart rate", r"running"),
    "health": (r"doctor", r"medic", r"symptom", r"audiologist", r"cardiologist"),
    "beauty": (r"skin", r"makeup", r"cosmetic", r"shampoo", r"perfum", r"fragrance"),
    "fashion": (r"cloth", r"wear\b", r"dress", r"fashion", r"leather", r"wool", r"shoes?\b"),
    "home": (r"home", r"apartment", r"flat\b", r"walls?\b", r"living room", r"furnitur", r"lease"),
    "technology": (
        r"phone",
        r"device",
        r"computer",
        r"laptop",
        r"software",
        r"apps?\b",
        r"screens?\b",
        r"internet",
    ),
    "pets": (r"pets?\b", r"dogs?\b", r"cats?\b", r"puppy", r"kitten", r"vet\b"),
    "screen": (
        r"watch",
        r"films?\b",
        r"movies?\b",
        r"shows?\b",
        r"series",
        r"theatre",
        r"subtitles",
        r"captions",
        r"netflix",
        r"video",
    ),
    "games": (r"games?\b", r"gaming", r"play(?:s|ing)?\b", r"console", r"in-app", r"gambl"),
    "music": (r"music", r"lyrics", r"songs?\b", r"concert", r"venues?\b", r"listen"),
    "books": (r"books?\b", r"read(?:s|ing)?\b", r"novel", r"print", r"audiobook"),
    "learning": (
        r"stud",
        r"courses?\b",
        r"lecture",
        r"materials",
        r"learn",
        r"class",
        r"semester",
        r"text\b",
    ),
    "work": (r"work", r"office", r"meeting", r"presenting", r"colleague", r"shifts?\b"),
    "finance": (r"financing", r"savings", r"debt", r"invest"),
}

_NAMED = {
    d: re.compile(r"(?<!\w)(?:" + "|".join(stems) + r")", re.IGNORECASE)
    for d, stems in _WORDS.items()
}


def named_domains(text: str) -> list[str]:
    """The domains a text names outright, in DOMAINS order."""
    return [d for d in DOMAINS if _NAMED[d].search(text)]
