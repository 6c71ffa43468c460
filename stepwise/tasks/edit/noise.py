"""Learner-error noise: turn clean tokenized English into realistic (noisy, clean) pairs.

Why: a grammatical-error-correction editor (GECToR-style tagging) learns from pairs of an erroneous sentence
and its correction, and real learner corpora are small and licence-bound. Noise that imitates what learners
get wrong gives any number of pairs from clean text; the same functions augment classifier and tagger data.

Input is tokenized like JFLEG/CoNLL: tokens separated by single spaces, punctuation and clitics split off
("do n't", "today 's"). Pure Python: every draw comes from the `random.Random` passed in, so a seed fixes
the output. The demo corpus `stepwise/demo/clean_en.txt` is written by the team (original sentences, the
team's own licence, ships with the product).

Error types, in the order they are applied, and their default rates (the probability, per sentence, that
the type is applied once; types are drawn independently; a type with no place in the sentence is skipped):

    type            rate  what it does (examples)
    agreement       0.20  is/are, was/were, has/have, does/do, am; 3rd-person -s ("he like", "they likes")
    verb_form       0.20  tense, participle, -ing, over-regularised past ("went" -> "go"/"goed"/"gone"/"going")
    noun_number     0.20  singular <-> plural, irregular ("childs"), uncountable ("informations")
    article         0.30  drop, insert or swap a/an/the ("a apple", "to the school")
    preposition     0.25  in/on/at, to/for, of/about ... confusions; drop one
    missing_word    0.15  drop a function word (to, is, the, of ...)
    word_order      0.06  swap two adjacent words (not across punctuation or a determiner, not the first word)
    duplicate_word  0.05  repeat a word ("the the")
    punctuation     0.20  drop or insert a comma, drop the final period, "?" -> "."
    spelling        0.45  learner misspellings ("recieve", "becouse", "responsable"), -ible/-able, ie/ei,
                          doubled/undoubled consonants, typos (drop/double/swap/keyboard neighbour);
                          alphabetic words of 3+ letters only, never the first letter
    casing          0.10  lowercase a sentence start or a name ("i", "paris"), capitalise a mid-sentence word

Each type changes one place and never a token an earlier type changed (nor a neighbour of one it inserted or
deleted), so the list `corrupt` returns counts real, distinct errors. On the demo corpus the defaults give a
noisy pair 2.2 errors on average (about a quarter of them spelling), like learner text: JFLEG's sources have a
few errors each, many of them spelling.
"""

from __future__ import annotations

import difflib
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from stepwise.errors import StepwiseError

ERROR_TYPES = ("agreement", "verb_form", "noun_number", "article", "preposition", "missing_word", "word_order",
               "duplicate_word", "punctuation", "spelling", "casing")
DEFAULT_RATES: dict[str, float] = {
    "agreement": 0.20, "verb_form": 0.20, "noun_number": 0.20, "article": 0.30, "preposition": 0.25,
    "missing_word": 0.15, "word_order": 0.06, "duplicate_word": 0.05, "punctuation": 0.20, "spelling": 0.45,
    "casing": 0.10,
}
# Types that substitute one token for another: a tagger's labels stay aligned (augment_tokens).
TOKEN_PRESERVING = ("spelling", "casing")
# A draw for a noisy pair that applied nothing is redrawn, so `keep_clean` alone sets the share of identity pairs.
MAX_DRAWS = 20

# ---------------------------------------------------------------------------------------------- word lists

_DETERMINERS = frozenset("a an the this that these those my your his her its our their every each no "
                         "some any many few several".split())
_SUBJECTS_NON3 = frozenset("i you we they".split())
# Words after which a bare verb is a verb, not a noun ("to work", "we work" vs "at work").
_VERB_CONTEXT = _SUBJECTS_NON3 | frozenset("to will would can could should must might may do did does n't not "
                                           "never always often usually also sometimes people".split())
_MODALS = frozenset("to will would can could should must might may".split())

_ARTICLES = ("a", "an", "the")
_PREPOSITIONS = {
    "in": ("on", "at", "into", "to"), "on": ("in", "at", "about"), "at": ("in", "on", "to"),
    "to": ("for", "at", "in"), "for": ("to", "of", "since"), "of": ("for", "from", "about"),
    "with": ("by", "to", "of"), "from": ("of", "since", "by"), "about": ("of", "on", "for"),
    "by": ("with", "from", "on"), "into": ("in", "to"), "during": ("in", "for", "while"),
    "since": ("for", "from"), "until": ("to", "by"), "among": ("between",), "between": ("among",),
    "through": ("by", "across"), "across": ("through",), "after": ("since",), "without": ("with",),
}
_DROPPABLE = frozenset("the a an to of is are was were be been will have has had it that there and do does did "
                       "am in on at for with would can".split())

# base past participle — the irregular verbs learners meet first ("be" is agreement's).
_IRREGULAR_VERBS = """
go went gone; have had had; do did done; make made made; take took taken; come came come; see saw seen;
get got gotten; give gave given; know knew known; think thought thought; find found found; tell told told;
become became become; leave left left; feel felt felt; bring brought brought; begin began begun;
keep kept kept; write wrote written; stand stood stood; hear heard heard; meet met met; run ran run;
pay paid paid; sit sat sat; speak spoke spoken; grow grew grown; lose lost lost; fall fell fallen;
send sent sent; build built built; spend spent spent; eat ate eaten; drink drank drunk; buy bought bought;
teach taught taught; catch caught caught; choose chose chosen; drive drove driven; fly flew flown;
forget forgot forgotten; sleep slept slept; swim swam swum; wear wore worn; win won won; say said said;
understand understood understood; break broke broken; rise rose risen; sell sold sold; sing sang sung;
throw threw thrown; ride rode ridden; ring rang rung; lend lent lent; hold held held; read read read; put put put;
cut cut cut; let let let; hit hit hit; cost cost cost; hide hid hidden; wake woke woken; show showed shown
"""
_REGULAR_VERBS = """
want like work play live study visit start help need use try move stay travel walk talk watch ask call look
finish change plan decide learn enjoy believe agree improve open close arrive happen hope stop love prefer
cook clean create share support return wait miss remember relax join worry carry reach allow explain develop
produce increase reduce protect solve invent recycle discuss complete receive prepare practice manage offer
order answer listen turn fix pass seem rain invite paint check clap collect encourage promise recognize
repair replace save die lie rent delay cancel argue celebrate attract destroy warn plant ban bark dream
graduate apply fail expect promote retire book delete attend
"""
# verbs that double their last consonant before -ed/-ing (American spelling: "traveled", "canceled")
_DOUBLE_FINAL = frozenset("stop plan prefer admit shop drop chat jog run swim sit get begin put cut win forget "
                          "let hit set ban clap".split())

# singular nouns with regular plurals; irregular and uncountable ones below.
_NOUNS = """
time year day week month hour minute morning evening night weekend holiday friend family parent brother
sister mother father son daughter cousin uncle aunt grandparent grandmother grandfather neighbor baby husband
student teacher school class classmate lesson subject exam test course university college degree grade mark
book essay report library professor scholarship project presentation question job company office colleague
manager boss worker employee business salary meeting interview factory farmer doctor nurse lawyer engineer
team deadline skill opportunity idea problem reason way city town village country street road house home
apartment building bridge river park market shop store center square neighborhood station airport hotel
museum restaurant cafe cinema beach mountain coast sea lake forest island garden tree flower animal bird dog
cat pet car bus train plane flight ticket bike bicycle passport trip journey tourist visitor computer phone
smartphone laptop app website game screen message email letter photo picture camera machine robot battery
program video song film movie meal breakfast lunch dinner vegetable apple egg cake sandwich drink bottle cup
glass bag box hospital disease illness headache habit diet body arm leg eye heart bin plant price product
advertisement customer newspaper magazine language word sentence answer opinion advantage disadvantage
argument example solution result rule law decision dream goal present gift party wedding birthday festival
concert season storm fire war culture tradition custom window door room bedroom kitchen wall key shoe coat
dress shirt chair table bed page novel star planet stranger instrument competition jacket snack
government chemical storm region level century kilo instruction experience change mistake
"""
_IRREGULAR_NOUNS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "foot": "feet", "tooth": "teeth",
    "mouse": "mice", "life": "lives", "wife": "wives", "knife": "knives", "leaf": "leaves", "shelf": "shelves",
    "half": "halves", "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes", "grandchild": "grandchildren",
}
_UNCOUNTABLE = frozenset("information advice furniture homework equipment knowledge research luggage traffic "
                         "money bread pollution evidence progress software feedback rubbish music weather".split())

# Misspellings learners actually write (not typos): the correct word, then what they write.
_MISSPELLINGS = {
    "because": ("becouse", "becuase", "beacause"), "believe": ("beleive", "belive"), "receive": ("recieve",),
    "received": ("recieved",), "different": ("diferent", "differnt"), "necessary": ("neccessary", "necesary"),
    "environment": ("enviroment", "enviorment"), "government": ("goverment",), "which": ("wich", "witch"),
    "their": ("there", "thier"), "there": ("their",), "than": ("then",), "then": ("than",), "too": ("to",),
    "where": ("were",), "were": ("where",), "whether": ("wether",), "know": ("now",), "buy": ("by",),
    "tomorrow": ("tommorow", "tomorow"), "until": ("untill",), "really": ("realy",), "beautiful": ("beatiful",),
    "definitely": ("definately",), "separate": ("seperate",), "friend": ("freind",), "friends": ("freinds",),
    "science": ("sience",), "technology": ("tecnology", "technologie"), "business": ("bussiness", "buisness"),
    "always": ("allways",), "people": ("peaple", "poeple"), "knowledge": ("knowlege",),
    "successful": ("succesful", "sucessful"), "opportunity": ("oportunity",), "opportunities": ("oportunities",),
    "recommend": ("recomend", "reccomend"), "address": ("adress",), "advertisement": ("advertisment",),
    "especially": ("expecially", "especialy"), "probably": ("probaly", "propably"),
    "experience": ("experiance",), "independent": ("independant",), "responsible": ("responsable",),
    "possible": ("possable",), "comfortable": ("confortable", "comfortible"), "interesting": ("intresting",),
    "family": ("familly",), "studying": ("studing",), "writing": ("writting",), "coming": ("comming",),
    "foreign": ("foriegn",), "achieve": ("acheive",), "piece": ("peice",), "quite": ("quiet",),
    "lose": ("loose",), "advice": ("advise",), "affect": ("effect",), "country": ("contry",),
    "language": ("langauge", "languaje"), "grammar": ("grammer",), "library": ("libary",),
    "restaurant": ("restaurent", "resturant"), "finally": ("finaly",), "usually": ("usualy",),
    "important": ("importent", "importan"), "education": ("educacion",), "problem": ("problam",),
    "health": ("healt",), "future": ("futur",), "society": ("sociaty",), "tired": ("tierd",),
    "decision": ("desicion",), "example": ("exemple",), "exercise": ("excercise", "exercice"),
    "disappointing": ("dissapointing",), "embarrassed": ("embarassed",), "occurred": ("occured",),
    "everything": ("everythink",), "something": ("somthing",), "thought": ("tought",), "through": ("trough",),
    "city": ("citty",), "course": ("cource",),
    "write": ("wright",), "weather": ("whether",), "whole": ("hole",), "personal": ("personnal",),
}
_PATTERNS = (("ible", "able"), ("able", "ible"), ("ie", "ei"), ("ei", "ie"), ("ence", "ance"), ("ance", "ence"),
             ("ph", "f"), ("tion", "sion"), ("ous", "us"), ("ght", "gth"))
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_VOWELS = frozenset("aeiou")


def _neighbours() -> dict[str, str]:
    """Letters next to each letter on a QWERTY keyboard: its row, and the staggered rows above and below."""
    where = {(r, c): ch for r, row in enumerate(_KEYBOARD_ROWS) for c, ch in enumerate(row)}
    return {ch: "".join(where[p] for p in ((r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1),
                                             (r + 1, c)) if p in where)
            for (r, c), ch in where.items()}


_KEYBOARD = _neighbours()


def _third(v: str) -> str:
    if v in ("have", "be"):
        return {"have": "has", "be": "is"}[v]
    if v.endswith(("s", "x", "z", "ch", "sh", "o")):
        return v + "es"
    if v.endswith("y") and v[-2:-1] not in _VOWELS:
        return v[:-1] + "ies"
    return v + "s"


def _past(v: str) -> str:
    if v.endswith("e"):
        return v + "d"
    if v.endswith("y") and v[-2:-1] not in _VOWELS:
        return v[:-1] + "ied"
    if v in _DOUBLE_FINAL:
        return v + v[-1] + "ed"
    return v + "ed"


def _ing(v: str) -> str:
    if v.endswith("ie"):
        return v[:-2] + "ying"
    if v.endswith("e") and not v.endswith(("ee", "ye")) and v != "be":
        return v[:-1] + "ing"
    if v in _DOUBLE_FINAL:
        return v + v[-1] + "ing"
    return v + "ing"


def _verb_table() -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, frozenset[str]]]]:
    """Every verb's forms by kind (base, s3, past, pp, ing, and the over-regularised "goed" for irregulars),
    and the reverse index: word -> (lemma, kinds it can be)."""
    forms: dict[str, dict[str, str]] = {}
    for entry in _IRREGULAR_VERBS.replace("\n", " ").split(";"):
        base, past, pp = entry.split()
        forms[base] = {"base": base, "s3": _third(base), "past": past, "pp": pp, "ing": _ing(base)}
        if _past(base) not in (past, pp) and base not in ("see", "have", "do"):  # "seed" is a word; "haved" rare
            forms[base]["over"] = _past(base)
    for base in _REGULAR_VERBS.split():
        forms[base] = {"base": base, "s3": _third(base), "past": _past(base), "pp": _past(base), "ing": _ing(base)}
    index: dict[str, tuple[str, set[str]]] = {}
    for lemma, kinds in forms.items():
        for kind, word in kinds.items():
            if kind == "over":
                continue
            index.setdefault(word, (lemma, set()))[1].add(kind)
    return forms, {w: (lemma, frozenset(k)) for w, (lemma, k) in index.items()}


_VERBS, _VERB_INDEX = _verb_table()


def _plural(noun: str) -> str:
    if noun in _IRREGULAR_NOUNS:
        return _IRREGULAR_NOUNS[noun]
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in _VOWELS:
        return noun[:-1] + "ies"
    return noun + "s"


def _noun_table() -> dict[str, tuple[str, ...]]:
    """word -> the wrong-number forms a learner writes instead (incl. "childs", "childrens", "informations")."""
    table: dict[str, tuple[str, ...]] = {}
    for noun in _NOUNS.split():
        table[noun] = (_plural(noun),)
        table[_plural(noun)] = (noun,)
    for sing, plur in _IRREGULAR_NOUNS.items():
        over = sing + "s"
        table[sing] = (plur,) if over == plur else (plur, over)
        table[plur] = (sing, plur + "s") if not plur.endswith("s") else (sing,)
    for noun in _UNCOUNTABLE:
        table[noun] = (_plural(noun),)
    return table


_NOUN_FORMS = _noun_table()

# ---------------------------------------------------------------------------------------------- helpers


def _match_case(word: str, like: str) -> str:
    """`word` in the case pattern of `like` ("The" -> "A", "NASA" stays upper)."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _low(tokens: Sequence[str], i: int) -> str:
    return tokens[i].lower() if 0 <= i < len(tokens) else ""


def _is_word(token: str) -> bool:
    return token.isalpha()


def _replace(tokens: list[str], i: int, word: str) -> list[str]:
    return [*tokens[:i], _match_case(word, tokens[i]), *tokens[i + 1:]]


def _pick_place(rng: random.Random, places: list[tuple[int, Sequence[str]]]) -> tuple[int, str] | None:
    """One (position, replacement) from places with their candidate replacements."""
    if not places:
        return None
    i, options = places[rng.randrange(len(places))]
    return i, options[rng.randrange(len(options))]


def _substitute(tokens: list[str], rng: random.Random, free: Sequence[bool],
                options: Callable[[list[str], int], Sequence[str]]) -> list[str] | None:
    """Replace one free token by one of `options(tokens, i)` (an empty sequence: not a place)."""
    places = []
    for i in range(len(tokens)):
        if free[i]:
            found = [o for o in options(tokens, i) if o != tokens[i].lower()]
            if found:
                places.append((i, found))
    choice = _pick_place(rng, places)
    return None if choice is None else _replace(tokens, *choice)


def _an(word: str) -> str:
    return "an" if word[:1].lower() in _VOWELS else "a"


# ---------------------------------------------------------------------------------------------- error types
# Each takes the tokens, the rng and which positions are still free (untouched by earlier types), and returns
# the new token list, or None when the sentence has no place for this error.


def _agreement(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """Subject-verb agreement: the auxiliaries' number, and the 3rd-person -s added or dropped."""
    swaps = {"is": ("are",), "are": ("is",), "was": ("were",), "were": ("was",), "has": ("have",),
             "have": ("has",), "does": ("do",), "do": ("does",), "am": ("is", "are")}

    def options(toks: list[str], i: int) -> Sequence[str]:
        word, prev = toks[i].lower(), _low(toks, i - 1)
        if word in swaps:
            return () if word in ("have", "do") and prev in _MODALS else swaps[word]
        entry = _VERB_INDEX.get(word)
        if entry is None or prev in _DETERMINERS or entry[0] in ("have", "do"):
            return ()
        lemma, kinds = entry
        if kinds == {"s3"}:
            return (lemma,)  # "she like"
        if "base" in kinds and prev in _SUBJECTS_NON3:
            return (_VERBS[lemma]["s3"],)  # "they likes"
        return ()

    return _substitute(tokens, rng, free, options)


def _verb_form(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """Tense and form confusions: base for past ("yesterday I go"), "have went", "goed", "I am go"."""
    def options(toks: list[str], i: int) -> Sequence[str]:
        entry = _VERB_INDEX.get(toks[i].lower())
        prev = _low(toks, i - 1)
        if entry is None or prev in _DETERMINERS:
            return ()
        lemma, kinds = entry
        if kinds <= {"base"} and prev not in _VERB_CONTEXT:
            return ()  # a bare "work", "plan", "visit" may be a noun
        if lemma in ("do", "have") and (i == 0 or _low(toks, i + 1) in ("n't", "not")):
            return ()  # an auxiliary: "did n't" for "do n't" is tense, "done n't" nobody writes
        return sorted({w for k, w in _VERBS[lemma].items() if k != "s3"})

    return _substitute(tokens, rng, free, options)


def _noun_number(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """Singular for plural and back ("three book", "a books", "childs", "informations")."""
    def options(toks: list[str], i: int) -> Sequence[str]:
        word = toks[i].lower()
        if toks[i][:1].isupper() and i > 0:
            return ()  # a name ("Rome"), not a noun
        return _NOUN_FORMS.get(word, ())

    return _substitute(tokens, rng, free, options)


def _article(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """Drop an article, use the wrong one ("a apple", "the" for "a"), or add one where none belongs."""
    present = [i for i, t in enumerate(tokens) if free[i] and t.lower() in _ARTICLES]
    # a bare noun right after a preposition or a verb ("to school", "play football") invites an article
    insert = [i for i in range(1, len(tokens))
              if free[i] and tokens[i] in _NOUN_FORMS
              and (_low(tokens, i - 1) in _PREPOSITIONS or _low(tokens, i - 1) in _VERB_INDEX
                   or _low(tokens, i - 1) in ("is", "are", "was", "were", "be", "been"))]
    ops = [op for op, ok in (("drop", present), ("swap", present), ("insert", insert)) if ok]
    if not ops:
        return None
    op = ops[rng.randrange(len(ops))]
    if op == "insert":
        i = insert[rng.randrange(len(insert))]
        article = rng.choice(("the", "the", _an(tokens[i]), "a"))
        return [*tokens[:i], article, *tokens[i:]]
    i = present[rng.randrange(len(present))]
    if op == "drop":
        rest = tokens[:i] + tokens[i + 1:]
        if i == 0 and rest and tokens[0][:1].isupper():
            rest[0] = rest[0][:1].upper() + rest[0][1:]  # "The cat" -> "Cat"
        return rest
    word = tokens[i].lower()
    wrong = {"the": ("a", "an"), "a": ("an", "the"), "an": ("a", "the")}[word]
    return _replace(tokens, i, wrong[rng.randrange(len(wrong))])


def _preposition(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """The wrong preposition from its usual confusion set ("interested on", "arrive to"), or none at all."""
    places = [i for i, t in enumerate(tokens) if free[i] and t.lower() in _PREPOSITIONS]
    if not places:
        return None
    i = places[rng.randrange(len(places))]
    if rng.random() < 0.25 and len(tokens) > 3:
        return tokens[:i] + tokens[i + 1:]
    options = _PREPOSITIONS[tokens[i].lower()]
    return _replace(tokens, i, options[rng.randrange(len(options))])


def _missing_word(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """A function word left out ("I want go", "it very good")."""
    if len(tokens) <= 3:
        return None
    places = [i for i, t in enumerate(tokens) if free[i] and t.lower() in _DROPPABLE
              and t.lower() not in (_low(tokens, i - 1), _low(tokens, i + 1))
              and not _low(tokens, i + 1).startswith("'") and _low(tokens, i + 1) != "n't"]  # keep "do n't"
    if not places:
        return None
    i = places[rng.randrange(len(places))]
    rest = tokens[:i] + tokens[i + 1:]
    if i == 0 and tokens[0][:1].isupper():
        rest[0] = rest[0][:1].upper() + rest[0][1:]
    return rest


def _word_order(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """Two neighbouring words swapped ("I go always"); never across punctuation, a determiner ("has a small"
    -> "a has small" is no learner's) or the sentence start."""
    places = [i for i in range(1, len(tokens) - 1)
              if free[i] and free[i + 1] and _is_word(tokens[i]) and _is_word(tokens[i + 1])
              and tokens[i].lower() != tokens[i + 1].lower()
              and tokens[i].lower() not in _DETERMINERS and tokens[i + 1].lower() not in _DETERMINERS]
    if not places:
        return None
    i = places[rng.randrange(len(places))]
    return [*tokens[:i], tokens[i + 1], tokens[i], *tokens[i + 2:]]


def _duplicate_word(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """A word written twice ("the the")."""
    places = [i for i, t in enumerate(tokens) if free[i] and _is_word(t) and t.lower() != _low(tokens, i + 1)]
    if not places:
        return None
    i = places[rng.randrange(len(places))]
    copy = tokens[i].lower() if i == 0 and tokens[i] != "I" else tokens[i]
    return [*tokens[:i + 1], copy, *tokens[i + 1:]]


def _punctuation(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """A comma dropped or added, the final period dropped, a question ended with a period."""
    commas = [i for i, t in enumerate(tokens) if free[i] and t == ","]
    gaps = [i for i in range(2, len(tokens) - 1)
            if free[i] and free[i - 1] and _is_word(tokens[i - 1]) and _is_word(tokens[i])]
    last = len(tokens) - 1
    final = tokens[last] if tokens and free[last] and tokens[last] in (".", "?") else None
    ops = [op for op, ok in (("drop", commas), ("insert", gaps), ("final", final)) if ok]
    if not ops:
        return None
    op = ops[rng.randrange(len(ops))]
    if op == "drop":
        i = commas[rng.randrange(len(commas))]
        return tokens[:i] + tokens[i + 1:]
    if op == "insert":
        i = gaps[rng.randrange(len(gaps))]
        return [*tokens[:i], ",", *tokens[i:]]
    if final == "?" and rng.random() < 0.5:
        return [*tokens[:last], "."]
    return tokens[:last]


def _misspell(word: str, rng: random.Random) -> str:
    """One misspelling of a lowercase word: a learner's, a spelling-rule confusion, or a typo (first letter kept)."""
    known = _MISSPELLINGS.get(word, ())
    if known and rng.random() < 0.6:
        return known[rng.randrange(len(known))]
    rules = [(a, b) for a, b in _PATTERNS if a in word[1:]]
    doubled = [i for i in range(2, len(word)) if word[i] == word[i - 1] and word[i] not in _VOWELS]
    single = [i for i in range(1, len(word) - 1) if word[i] not in _VOWELS and word[i - 1] in _VOWELS
              and word[i + 1] in _VOWELS and word[i].isalpha() and word[i] not in "wxy"]
    if (rules or doubled or single) and rng.random() < 0.4:
        kinds = [k for k, ok in (("rule", rules), ("undouble", doubled), ("double", single)) if ok]
        kind = kinds[rng.randrange(len(kinds))]
        if kind == "rule":
            a, b = rules[rng.randrange(len(rules))]
            at = word.index(a, 1)
            return word[:at] + b + word[at + len(a):]
        if kind == "undouble":
            i = doubled[rng.randrange(len(doubled))]
            return word[:i] + word[i + 1:]
        i = single[rng.randrange(len(single))]
        return word[:i] + word[i] + word[i:]
    i = rng.randrange(1, len(word))  # typos spare the first letter
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1:]
    if op == 1:
        return word[:i] + word[i] + word[i:]
    if op == 2 and i < len(word) - 1 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    near = _KEYBOARD.get(word[i], "")
    return word[:i] + near[rng.randrange(len(near))] + word[i + 1:] if near else word[:i] + word[i + 1:]


def _spelling(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """One misspelled word; longer words are likelier, as with learners. Alphabetic words of 3+ letters only."""
    places = [i for i, t in enumerate(tokens) if free[i] and _is_word(t) and len(t) >= 3 and not t.isupper()]
    if not places:
        return None
    weights = [len(tokens[i]) - 2 for i in places]
    i = rng.choices(places, weights=weights)[0]
    word = tokens[i].lower()
    for _ in range(5):
        wrong = _misspell(word, rng)
        if wrong != word and wrong.isalpha():
            return _replace(tokens, i, wrong)
    return None


def _casing(tokens: list[str], rng: random.Random, free: Sequence[bool]) -> list[str] | None:
    """A capital lost ("i", "paris", a lowercase sentence start) or a mid-sentence word capitalised."""
    start = [0] if tokens and free[0] and _is_word(tokens[0]) and tokens[0][0].isupper() else []
    names = [i for i in range(1, len(tokens)) if free[i] and _is_word(tokens[i]) and tokens[i][0].isupper()]
    lower = [i for i in range(1, len(tokens)) if free[i] and _is_word(tokens[i]) and tokens[i].islower()]
    lower = [i for i in lower if tokens[i] in _NOUN_FORMS] or lower  # learners capitalise nouns ("Computer")
    ops = [places for places in (start, names, lower) if places]
    if not ops:
        return None
    places = ops[rng.randrange(len(ops))]
    i = places[rng.randrange(len(places))]
    word = tokens[i]
    new = word.lower() if word[0].isupper() else word[0].upper() + word[1:]
    return [*tokens[:i], new, *tokens[i + 1:]]


NOISE: dict[str, Callable[[list[str], random.Random, Sequence[bool]], list[str] | None]] = {
    "agreement": _agreement, "verb_form": _verb_form, "noun_number": _noun_number, "article": _article,
    "preposition": _preposition, "missing_word": _missing_word, "word_order": _word_order,
    "duplicate_word": _duplicate_word, "punctuation": _punctuation, "spelling": _spelling, "casing": _casing,
}

# ---------------------------------------------------------------------------------------------- public API


def check_rates(rates: dict[str, float] | None) -> dict[str, float]:
    """The defaults overridden by `rates`; an unknown type or a rate outside [0, 1] is a StepwiseError."""
    merged = dict(DEFAULT_RATES)
    for name, value in (rates or {}).items():
        if name not in DEFAULT_RATES:
            raise StepwiseError(f"unknown error type {name!r} in the noise rates",
                                fix=f"use one of: {', '.join(ERROR_TYPES)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0 <= value <= 1:
            raise StepwiseError(f"the rate of {name!r} must be a number from 0 to 1 (got {value!r})",
                                fix="give the per-sentence probability of that error type, e.g. 0.3")
        merged[name] = float(value)
    return merged


def scale_rates(rates: dict[str, float] | None, scale: float, cap: float = 0.95) -> dict[str, float]:
    """Every rate (the defaults overridden by `rates`) times `scale`, capped at `cap`: denser noise.

    Why: an editor trained on about twice learner density (scale 2.5: 4.4 errors per noisy pair) scored best
    on JFLEG and gained most from its later passes; scale 4 was worse (bench/NOTES.md)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale < math.inf:
        raise StepwiseError(f"the noise scale must be a number of 0 or more (got {scale!r})",
                            fix="1 keeps the rates, 2.5 makes the noise denser, 0 turns it off")
    return {name: min(cap, rate * scale) if scale != 1 else rate for name, rate in check_rates(rates).items()}


def _free_after(old: list[str], new: list[str], free: list[bool], adjacent: bool = False) -> list[bool]:
    """Carry the untouched marks across an edit: changed tokens and both neighbours of an insertion or a
    deletion are no longer free (so no later type undoes, or stacks on, an earlier error: "the the" stays
    a duplicate, not a duplicate and a typo in one edit). `adjacent`: the neighbours stay free, so errors
    may sit side by side ("he go school": a verb form next to a missing word), which one tag per word
    cannot fix in one pass."""
    out = [False] * len(new)
    around = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            out[j1:j2] = free[i1:i2]
        elif tag in ("delete", "insert") and not adjacent:
            around += [j1 - 1, j2]
    for j in around:
        if 0 <= j < len(out):
            out[j] = False
    return out


def _corrupt(tokens: list[str], rng: random.Random, rates: dict[str, float],
             adjacent: bool = False) -> tuple[list[str], list[str]]:
    noisy, free, applied = list(tokens), [True] * len(tokens), []
    for name in ERROR_TYPES:
        if rng.random() >= rates[name]:  # drawn for every type, so one type's rate leaves the others' draws alone
            continue
        changed = NOISE[name](noisy, rng, free)
        if changed is None or changed == noisy:
            continue
        free = _free_after(noisy, changed, free, adjacent)
        noisy = changed
        applied.append(name)
    if noisy == list(tokens):
        return list(tokens), []
    return noisy, applied


def corrupt(tokens: list[str], rng: random.Random, rates: dict[str, float] | None = None,
            adjacent: bool = False) -> tuple[list[str], list[str]]:
    """(noisy tokens, the error types applied, in order); each type at most once, with probability its rate.
    `adjacent`: errors may sit next to an inserted or deleted word (see `_free_after`)."""
    return _corrupt(tokens, rng, check_rates(rates), adjacent)


def make_pairs(sentences: Iterable[str], *, seed: int, rates: dict[str, float] | None = None, copies: int = 1,
               keep_clean: float = 0.0, adjacent: bool = False) -> tuple[list[tuple[str, str]], Counter]:
    """(noisy, clean) pairs, `copies` per non-blank sentence, and how often each error type was applied.

    A share `keep_clean` of the pairs is left unchanged (identity pairs teach an editor to keep correct text);
    every other pair carries at least one error when the sentence allows it (a draw that applied nothing is
    redrawn). Each pair has its own generator seeded by (seed, sentence index, copy), so the same seed gives
    the same pairs and a sentence's noise does not depend on the lines around it. The clean side is the
    sentence with its whitespace collapsed to single spaces.
    """
    rates = check_rates(rates)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise StepwiseError(f"copies must be a whole number of at least 1 (got {copies!r})",
                            fix="give how many noisy versions to write per sentence, e.g. 1")
    if isinstance(keep_clean, bool) or not isinstance(keep_clean, (int, float)) or not 0 <= keep_clean <= 1:
        raise StepwiseError(f"keep_clean must be a share from 0 to 1 (got {keep_clean!r})",
                            fix="give the share of pairs to leave unchanged, e.g. 0.1")
    draws = MAX_DRAWS if any(rates.values()) else 1
    pairs: list[tuple[str, str]] = []
    counts: Counter = Counter()
    index = -1
    for sentence in sentences:
        tokens = sentence.split()
        if not tokens:
            continue
        index += 1
        clean = " ".join(tokens)
        for copy in range(copies):
            rng = random.Random(f"{seed}/{index}/{copy}")
            if rng.random() < keep_clean:
                pairs.append((clean, clean))
                continue
            noisy, applied = tokens, []
            for _ in range(draws):
                noisy, applied = _corrupt(tokens, rng, rates, adjacent)
                if applied:
                    break
            counts.update(applied)
            pairs.append((" ".join(noisy), clean))
    return pairs, counts


def _scaled(rate: float, names: Sequence[str]) -> dict[str, float]:
    """The default rates of `names` times `rate`, capped at 1; the other types off."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < math.inf:
        raise StepwiseError(f"the augmentation rate must be a number of 0 or more (got {rate!r})",
                            fix="1 uses the default noise rates, 0.5 halves them, 0 turns noise off")
    return {name: min(1.0, DEFAULT_RATES[name] * rate) if name in names else 0.0 for name in ERROR_TYPES}


def augment_text(text: str, rng: random.Random, rate: float) -> str:
    """Text with learner noise, every default rate scaled by `rate` (capped at 1): augmentation for classifiers.

    Whitespace is collapsed to single spaces; words keep their attached punctuation, which then only shields
    them from spelling noise.
    """
    noisy, _ = _corrupt(text.split(), rng, _scaled(rate, ERROR_TYPES))
    return " ".join(noisy)


def augment_tokens(tokens: list[str], rng: random.Random, rate: float) -> list[str]:
    """Tokens with spelling and casing noise only, at the default rates scaled by `rate` (capped at 1).

    Both substitute one token for another, so the count and positions stay and a tagger's labels stay aligned.
    """
    noisy, _ = _corrupt(list(tokens), rng, _scaled(rate, TOKEN_PRESERVING))
    return noisy
