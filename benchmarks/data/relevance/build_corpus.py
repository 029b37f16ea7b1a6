"""Build the search-relevance corpus: booking emails and labelled queries.

    python build_corpus.py

writes ``emails.jsonl`` and ``queries.jsonl`` next to this file, byte for byte the same on every
run (fixed seed, Python 3.11 standard library only). About a hundred emails are written by hand,
each the answer to one query; the rest are distractors rendered from templates (confirmations,
invoices, automatic replies, refusals, newsletters, day sheets, acknowledgements, contracts), many
of them near-duplicates that differ only by town, venue, date and invoice number.

Before writing, the corpus is checked and the script stops on the first violation:

* every body has 40 to 150 words, ids and texts are unique, the language split is about 65/35;
* there are 100 queries, 60 French and 40 English, with the planned count of each kind;
* ``exact``: every relevant email holds all the query's distinctive terms (words of four letters
  or more, or holding a digit, compared without accents or case) and no other email holds them
  all;
* ``inflection``: each relevant email lacks at least one query term as written but holds another
  form of it (a word sharing its stem);
* ``paraphrase``: no relevant email holds any of the query's distinctive terms.
"""

from __future__ import annotations

import json
import random
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from textwrap import dedent

SEED = 20260312
HERE = Path(__file__).resolve().parent
EMAILS_PATH = HERE / "emails.jsonl"
QUERIES_PATH = HERE / "queries.jsonl"

MIN_WORDS = 40
MAX_WORDS = 150
MIN_EMAILS = 520
WRAP_WIDTH = 70
RIGHT_QUOTE = "\u2019"
BULLET = "\u2013"
FRENCH_SHARE = (0.60, 0.70)
PLANNED_KINDS = {
    ("fr", "exact"): 20,
    ("fr", "inflection"): 20,
    ("fr", "paraphrase"): 20,
    ("en", "exact"): 14,
    ("en", "inflection"): 13,
    ("en", "paraphrase"): 13,
}

FR_FILLER = {
    "confirmation": 48,
    "invoice": 40,
    "absence": 36,
    "refusal": 34,
    "newsletter": 30,
    "day_sheet": 38,
    "acknowledgement": 30,
    "contract": 35,
}
EN_FILLER = {
    "confirmation": 26,
    "invoice": 20,
    "absence": 18,
    "refusal": 18,
    "newsletter": 16,
    "day_sheet": 20,
    "acknowledgement": 15,
    "contract": 16,
}

# Invoice numbers held by a hand-picked email; templates never draw them.
RESERVED_INVOICES = {
    "fr": {"FAC-2026-0502", "FAC-2026-0417"},
    "en": {"INV-2026-0318", "INV-2026-0291", "INV-2026-0477"},
}


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Email:
    """One email of the corpus, known by a key until ids are given out."""

    key: str
    lang: str
    subject: str
    text: str


@dataclass(frozen=True)
class Query:
    """One labelled query; ``targets`` are email keys."""

    lang: str
    kind: str
    query: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Venue:
    """A venue in its town; ``article`` is the French article it takes ("Le ", "L'", "")."""

    town: str
    article: str
    name: str

    @property
    def full(self) -> str:
        """The venue's name with its article: "Le Chabada"."""
        return f"{self.article}{self.name}"

    @property
    def at(self) -> str:
        """French "à" + venue, contracted: "au Chabada", "aux Saulnières", "à L'Antipode"."""
        return _contract("à", self.article, self.name)

    @property
    def of(self) -> str:
        """French "de" + venue, contracted: "du Chabada", "des Saulnières", "de La Carène"."""
        return _contract("de", self.article, self.name)

    @property
    def in_town(self) -> str:
        """French "à" + town, contracted: "au Mans", "à Rennes"."""
        if self.town.startswith("Le "):
            return "au " + self.town[3:]
        return "à " + self.town


def _contract(preposition: str, article: str, name: str) -> str:
    """A French preposition joined to an article the way French writes it."""
    forms = {
        ("à", "Le "): "au ",
        ("à", "Les "): "aux ",
        ("de", "Le "): "du ",
        ("de", "Les "): "des ",
    }
    joined = forms.get((preposition, article))
    if joined is not None:
        return joined + name
    return f"{preposition} {article}{name}"


@dataclass(frozen=True)
class Gig:
    """Everything a template may mention about one concert."""

    lang: str
    venue: Venue
    day: date
    band: str
    fee: int
    invoice: str
    contact_first: str
    contact_full: str
    role: str
    colleague: str
    booker: str
    agency: str


def mail(key: str, lang: str, subject: str, text: str) -> Email:
    """An email written by hand; the body is dedented, stripped and its prose unwrapped."""
    return Email(key, lang, subject, reflow(dedent(text).strip()))


# ---------------------------------------------------------------------------------------------
# Pools for the templates
# ---------------------------------------------------------------------------------------------

FR_VENUES = [
    Venue("Rennes", "L'", "Antipode"),
    Venue("Rennes", "L'", "Ubu"),
    Venue("Brest", "La ", "Carène"),
    Venue("Brest", "Le ", "Vauban"),
    Venue("Lorient", "L'", "Hydrophone"),
    Venue("Nantes", "Le ", "Ferrailleur"),
    Venue("Nantes", "Le ", "Lieu Unique"),
    Venue("Angers", "Le ", "Chabada"),
    Venue("Le Mans", "Les ", "Saulnières"),
    Venue("Tours", "Le ", "Temps Machine"),
    Venue("Caen", "Le ", "Cargö"),
    Venue("Rouen", "Le ", "106"),
    Venue("Lille", "L'", "Aéronef"),
    Venue("Tourcoing", "Le ", "Grand Mix"),
    Venue("Lyon", "Le ", "Transbordeur"),
    Venue("Lyon", "Le ", "Marché Gare"),
    Venue("Grenoble", "La ", "Belle Électrique"),
    Venue("Toulouse", "Le ", "Metronum"),
    Venue("Bordeaux", "Le ", "Rocher de Palmer"),
    Venue("Mérignac", "Le ", "Krakatoa"),
    Venue("Montpellier", "", "Victoire 2"),
    Venue("Marseille", "L'", "Espace Julien"),
    Venue("Marseille", "Le ", "Makeda"),
    Venue("Dijon", "La ", "Vapeur"),
    Venue("Strasbourg", "Le ", "Molodoï"),
    Venue("Metz", "La ", "BAM"),
    Venue("Nancy", "L'", "Autre Canal"),
    Venue("Poitiers", "Le ", "Confort Moderne"),
    Venue("Limoges", "La ", "CCM John Lennon"),
    Venue("Vannes", "L'", "Échonova"),
    Venue("Quimper", "Le ", "Novomax"),
    Venue("Reims", "La ", "Cartonnerie"),
    Venue("Orléans", "L'", "Astrolabe"),
    Venue("Amiens", "La ", "Lune des Pirates"),
    Venue("Laval", "Le ", "6par4"),
    Venue("Saint-Malo", "La ", "Nouvelle Vague"),
    Venue("Le Havre", "Le ", "Tetris"),
    Venue("Évreux", "L'", "Abordage"),
]

EN_VENUES = [
    Venue("Bristol", "", "The Fleece"),
    Venue("Bristol", "", "Thekla"),
    Venue("Leeds", "", "The Wardrobe"),
    Venue("Leeds", "", "Belgrave Music Hall"),
    Venue("Glasgow", "", "Stereo"),
    Venue("Glasgow", "", "The Hug and Pint"),
    Venue("Manchester", "", "The Deaf Institute"),
    Venue("Manchester", "", "Gorilla"),
    Venue("Sheffield", "", "The Leadmill"),
    Venue("Sheffield", "", "Yellow Arch"),
    Venue("Liverpool", "", "The Jacaranda"),
    Venue("Newcastle", "", "The Cluny"),
    Venue("Nottingham", "", "Rescue Rooms"),
    Venue("Nottingham", "", "The Bodega"),
    Venue("Brighton", "", "The Prince Albert"),
    Venue("Brighton", "", "Patterns"),
    Venue("Cardiff", "", "Clwb Ifor Bach"),
    Venue("Cardiff", "", "Tramshed"),
    Venue("Edinburgh", "", "Sneaky Pete's"),
    Venue("Edinburgh", "", "The Caves"),
    Venue("Birmingham", "", "Hare & Hounds"),
    Venue("Birmingham", "", "The Sunflower Lounge"),
    Venue("York", "", "The Crescent"),
    Venue("Oxford", "", "The Bullingdon"),
    Venue("Norwich", "", "Norwich Arts Centre"),
    Venue("Leicester", "", "The Musician"),
    Venue("Dublin", "", "Whelan's"),
    Venue("Southampton", "", "The Joiners"),
]

FR_FIRST = [
    "Lucie", "Thomas", "Antoine", "Élise", "Mathilde", "Hugo", "Chloé", "Baptiste", "Pauline",
    "Maxime", "Léna", "Quentin", "Florian", "Anaïs", "Romain", "Émilie", "Vincent", "Laura",
    "Guillaume", "Margaux", "Damien", "Océane", "Justine", "Sébastien", "Alexis", "Héloïse",
    "Rémi", "Nathalie", "Jérôme", "Agathe",
]
FR_LAST = [
    "Martin", "Bernard", "Moreau", "Laurent", "Simon", "Michel", "Lefebvre", "Leroy", "David",
    "Bertrand", "Bonnet", "Dupont", "Fontaine", "Rousseau", "Mercier", "Blanc", "Guérin",
    "Boyer", "Legrand", "Gauthier", "Robin", "Clément", "Morin", "Henry", "Mathieu", "Duval",
    "Denis", "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Joly", "Rivière", "Brunet",
    "Gaillard", "Arnaud", "Renard", "Colin", "Vidal", "Picard", "Aubert", "Lemoine", "Renaud",
    "Lacroix", "Leclerc", "Rolland", "Hubert", "Berger", "Moulin", "Fleury", "Poirier",
]
FR_ROLES = [
    "Programmation", "Production", "Administration", "Régie générale", "Accueil artistes",
    "Communication",
]
FR_BOOKERS = [
    ("Camille Roux", "Marée Haute Prod"),
    ("Julien Morel", "Tournée Générale"),
    ("Sophie Lambert", "Azimut Booking"),
    ("Nicolas Faure", "Les Productions du Vent"),
    ("Claire Dubois", "Bretelle Prod"),
]
FR_BANDS = [
    "Lysandre", "Les Marées Basses", "Orage Mécanique", "Kalima", "Les Frères Tanguy",
    "Paloma Duo", "Brume", "Sillage", "Thalie", "Mordicus", "Les Ombres Douces", "Cyclone Bleu",
    "Arvor Trio", "Les Ondes Courtes", "Jeanne Vasseur", "Solal et les Insomniaques",
]
FR_STYLES = [
    "rock", "chanson", "folk", "électro", "jazz", "hip-hop", "musique bretonne", "pop", "punk",
    "soul", "blues", "musiques du monde",
]
FR_MONTHS = [
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
    "octobre", "novembre", "décembre",
]
FR_WEEKDAYS = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]

EN_FIRST = [
    "Emma", "Jack", "Sophie", "Harry", "Olivia", "George", "Amelia", "Charlie", "Isla", "Oscar",
    "Grace", "Freya", "Archie", "Lily", "Leo", "Ruby", "Finn", "Evie", "Hannah", "Callum",
    "Zoe", "Ewan", "Abbie", "Jamie", "Holly", "Kieran",
]
EN_LAST = [
    "Smith", "Jones", "Taylor", "Brown", "Wilson", "Thomas", "Johnson", "Walker", "Wright",
    "Robinson", "Thompson", "White", "Edwards", "Hall", "Wood", "Harris", "Lewis", "Jackson",
    "Clark", "Hill", "Scott", "Cooper", "Morris", "Moore", "Baker", "Mitchell", "Carter",
    "Phillips", "Parker", "Bell", "Murphy", "Kelly",
]
EN_ROLES = ["Programming", "Production", "Operations", "Promoter", "Box Office", "Marketing"]
EN_BOOKERS = [
    ("Camille Roux", "Marée Haute Prod"),
    ("Harriet Cole", "Fieldwork Agency"),
    ("Martin Shaw", "Northern Lights Booking"),
    ("Gemma Lloyd", "Blue Door Booking"),
]
EN_BANDS = [
    "Atlas Motel", "Harbour Lights", "Mira Vale", "Foxglove", "Cold Spring Choir",
    "The Lantern Years", "Saltmarsh", "Juniper Row", "The Low Hums", "Glass Ferns",
    "Kestrel Days", "Kalima", "Lysandre",
]
EN_STYLES = ["indie", "folk", "post-punk", "soul", "Americana", "electronica", "jazz", "garage"]
EN_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]
EN_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


# ---------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------


def fr_day(day: date) -> str:
    """A date as French mail writes it: "12 mars", "1er avril"."""
    number = "1er" if day.day == 1 else str(day.day)
    return f"{number} {FR_MONTHS[day.month - 1]}"


def fr_long_day(day: date) -> str:
    """A date with its weekday: "jeudi 12 mars"."""
    return f"{FR_WEEKDAYS[day.weekday()]} {fr_day(day)}"


def en_day(day: date) -> str:
    """A date as British mail writes it: "12 March"."""
    return f"{day.day} {EN_MONTHS[day.month - 1]}"


def en_long_day(day: date) -> str:
    """A date with its weekday: "Thursday 12 March"."""
    return f"{EN_WEEKDAYS[day.weekday()]} {en_day(day)}"


def fr_amount(value: float) -> str:
    """An amount in euros, French style: "1 200", "1 266,00"."""
    if value == int(value):
        return f"{int(value):,}".replace(",", " ")
    whole, cents = f"{value:,.2f}".split(".")
    return f"{whole.replace(',', ' ')},{cents}"


def fr_of(name: str) -> str:
    """French "de" + a name, contracted: "des Frères Tanguy", "d'Orage Mécanique", "de Brume"."""
    if name.startswith("Les "):
        return "des " + name[4:]
    if name.startswith("Le "):
        return "du " + name[3:]
    if fold(name[0]) in "aeiouy":
        return "d'" + name
    return "de " + name


def en_possessive(name: str) -> str:
    """An English possessive: "Foxglove's", "Harbour Lights'"."""
    return name + ("'" if name.endswith("s") else "'s")


def en_the(venue: str) -> str:
    """A venue's name as the head of "... team": "The Fleece", "The Patterns", "Whelan's"."""
    if venue.startswith("The ") or venue.endswith("'s"):
        return venue
    return "The " + venue


def en_amount(value: int) -> str:
    """An amount in pounds, British style: "1,200"."""
    return f"{value:,}"


def fold(text: str) -> str:
    """Lower case without accents, ligatures spelled out, typographic apostrophes plain."""
    text = text.replace("œ", "oe").replace("Œ", "oe").replace("æ", "ae").replace(RIGHT_QUOTE, "'")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")
STOPWORDS = {
    "pour", "avec", "dans", "sans", "plus", "cette", "leur", "leurs", "nous", "vous", "elle",
    "elles", "etre", "sont", "apres", "avant", "tout", "tous", "toute", "toutes", "aucun",
    "aucune", "meme", "quel", "quelle", "chez", "sur", "they", "them", "their", "with", "from",
    "that", "this", "have", "been", "will", "into", "about", "after", "before", "more", "much",
    "some", "there", "what", "when", "where", "which", "while",
}


def tokens(text: str) -> set[str]:
    """The words of a text, folded; hyphenated words and references stay whole."""
    return set(TOKEN.findall(fold(text)))


def distinctive_terms(query: str) -> list[str]:
    """The query's words that identify something: four letters or more, or holding a digit."""
    found = []
    for word in TOKEN.findall(fold(query)):
        if word in STOPWORDS:
            continue
        if len(word) >= 4 or any(c.isdigit() for c in word):
            found.append(word)
    return found


def word_count(text: str) -> int:
    """Words in a body, an elided or hyphenated word counting once."""
    return len(WORD.findall(text))


# ---------------------------------------------------------------------------------------------
# Gigs and people
# ---------------------------------------------------------------------------------------------


class InvoiceBook:
    """Hands out invoice numbers once each, never a reserved one."""

    def __init__(self, rng: random.Random, prefix: str, reserved: set[str]) -> None:
        numbers = [f"{prefix}-2026-{n:04d}" for n in range(101, 1000)]
        self._free = [n for n in numbers if n not in reserved]
        rng.shuffle(self._free)

    def take(self) -> str:
        """The next unused number."""
        return self._free.pop()


def random_day(rng: random.Random) -> date:
    """A concert day in the 2026 season."""
    return date(2026, 1, 1) + timedelta(days=rng.randrange(12, 350))


def person(rng: random.Random, lang: str) -> tuple[str, str]:
    """A first name and a full name."""
    first_names, last_names = (FR_FIRST, FR_LAST) if lang == "fr" else (EN_FIRST, EN_LAST)
    first = rng.choice(first_names)
    return first, f"{first} {rng.choice(last_names)}"


def make_gig(
    rng: random.Random,
    lang: str,
    invoices: InvoiceBook,
    venue: Venue | None = None,
    day: date | None = None,
    invoice: str | None = None,
    band: str | None = None,
) -> Gig:
    """A concert with the people around it; anything not given is drawn."""
    venues = FR_VENUES if lang == "fr" else EN_VENUES
    contact_first, contact_full = person(rng, lang)
    _, colleague = person(rng, lang)
    booker, agency = rng.choice(FR_BOOKERS if lang == "fr" else EN_BOOKERS)
    fee = rng.randrange(6, 31) * 100 if lang == "fr" else rng.randrange(6, 40) * 50
    return Gig(
        lang=lang,
        venue=venue or rng.choice(venues),
        day=day or random_day(rng),
        band=band or rng.choice(FR_BANDS if lang == "fr" else EN_BANDS),
        fee=fee,
        invoice=invoice or invoices.take(),
        contact_first=contact_first,
        contact_full=contact_full,
        role=rng.choice(FR_ROLES if lang == "fr" else EN_ROLES),
        colleague=colleague,
        booker=booker,
        agency=agency,
    )


def fr_fields(gig: Gig) -> dict[str, str]:
    """The placeholders of the French templates."""
    return {
        "ville": gig.venue.town,
        "a_ville": gig.venue.in_town,
        "salle": gig.venue.full,
        "a_salle": gig.venue.at,
        "de_salle": gig.venue.of,
        "date": fr_day(gig.day),
        "date_longue": fr_long_day(gig.day),
        "mois": FR_MONTHS[gig.day.month - 1],
        "groupe": gig.band,
        "de_groupe": fr_of(gig.band),
        "de_mois": fr_of(FR_MONTHS[gig.day.month - 1]),
        "cachet": fr_amount(gig.fee),
        "cachet_ttc": fr_amount(round(gig.fee * 1.055, 2)),
        "facture": gig.invoice,
        "contact": gig.contact_first,
        "contact_nom": gig.contact_full,
        "role": gig.role,
        "collegue": gig.colleague,
        "booker": gig.booker,
        "agence": gig.agency,
    }


def en_fields(gig: Gig) -> dict[str, str]:
    """The placeholders of the English templates."""
    return {
        "town": gig.venue.town,
        "venue": gig.venue.full,
        "date": en_day(gig.day),
        "long_date": en_long_day(gig.day),
        "month": EN_MONTHS[gig.day.month - 1],
        "band": gig.band,
        "bands": en_possessive(gig.band),
        "the_venue": en_the(gig.venue.full),
        "fee": en_amount(gig.fee),
        "invoice": gig.invoice,
        "contact": gig.contact_first,
        "contact_full": gig.contact_full,
        "role": gig.role,
        "colleague": gig.colleague,
        "booker": gig.booker,
        "agency": gig.agency,
    }


def later(day: date, rng: random.Random, low: int, high: int) -> date:
    """A day between ``low`` and ``high`` days after ``day``."""
    return day + timedelta(days=rng.randrange(low, high + 1))


def render(template: str, fields: dict[str, str]) -> str:
    """A template dedented, its prose unwrapped, and filled in."""
    return reflow(dedent(template).strip()).format(**fields)


# ---------------------------------------------------------------------------------------------
# French templates
# ---------------------------------------------------------------------------------------------

# The near-duplicate variants all come from one sender writing the same way, so that they differ
# only by town, venue, date, band, fee and invoice number.
FR_HOUSE_STYLE = {
    "salut": "Bonjour,",
    "fin": "Bien à vous,",
    "booker": "Camille Roux",
    "agence": "Marée Haute Prod",
}
FR_GREETINGS = ["Bonjour {contact},", "Bonjour {contact},", "Bonjour,", "Hello {contact},"]
FR_CLOSINGS = [
    "Bien à vous,", "Cordialement,", "Belle journée,", "À bientôt,", "Bien cordialement,",
]


def fr_confirmation(rng: random.Random, gig: Gig, variant: int | None = None) -> tuple[str, str]:
    """A booking confirmation; variant 0, the commonest, is the near-duplicate one."""
    fields = fr_fields(gig)
    fields["salut"] = rng.choice(FR_GREETINGS).format(**fields)
    fields["fin"] = rng.choice(FR_CLOSINGS)
    variant = rng.choice([0, 0, 0, 1, 2]) if variant is None else variant
    if variant == 0:
        fields.update(FR_HOUSE_STYLE)
        subject = "Confirmation de date — {ville}, {date}"
        body = """
            {salut}

            Je vous confirme que la date du {date} {a_ville} ({salle}) est bien calée. Le concert
            est annoncé à 20 h 30, ouverture des portes à 20 h. Le contrat de cession vous
            parviendra cette semaine et la facture {facture} sera émise après la date, pour un
            cachet de {cachet} € HT.

            Merci pour votre confiance, au plaisir de venir chez vous.

            {fin}
            {booker}
            Booking — {agence}
            """
    elif variant == 1:
        subject = "Re: {groupe} — {date}"
        body = """
            {salut}

            C'est parfait, on valide donc {groupe} le {date_longue} {a_salle}, {ville}. Cachet de
            {cachet} € HT, repas et boissons pour l'équipe sur place. Je vous envoie le contrat
            dans la foulée ; la facture {facture} suivra après le concert.

            Merci encore et à très vite,
            {booker}
            Booking — {agence}
            """
    else:
        subject = "Date confirmée : {groupe} {a_salle}"
        body = """
            {salut}

            Suite à notre échange, la date du {date} est confirmée pour {groupe} {a_salle}
            ({ville}). L'équipe arrivera vers 15 h pour un concert à 21 h. Côté facturation, la
            facture {facture} d'un montant de {cachet} € HT vous sera adressée le lendemain du
            concert.

            {fin}
            {booker}
            Booking — {agence}
            """
    return subject.format(**fields), render(body, fields)


def fr_invoice(rng: random.Random, gig: Gig, variant: int | None = None) -> tuple[str, str]:
    """An invoice sent after a concert."""
    fields = fr_fields(gig)
    fields["fin"] = rng.choice(FR_CLOSINGS)
    variant = rng.choice([0, 0, 1]) if variant is None else variant
    if variant == 0:
        fields.update(FR_HOUSE_STYLE)
        subject = "Facture {facture} — {groupe}"
        body = """
            Bonjour,

            Veuillez trouver ci-joint la facture {facture} d'un montant de {cachet_ttc} € TTC,
            correspondant au concert {de_groupe} du {date} {a_salle} ({ville}). Le règlement est
            attendu par virement sous 30 jours ; nos coordonnées bancaires figurent en bas du
            document.

            Merci encore pour l'accueil,
            {booker}
            Booking — {agence}
            """
    else:
        subject = "Envoi facture — {date} {a_ville}"
        body = """
            Bonjour {contact},

            Comme convenu, je vous transmets la facture {facture} pour la date du {date}
            {a_salle}, {a_ville}. Montant : {cachet} € HT, soit {cachet_ttc} € TTC avec la TVA à
            5,5 %. N'hésitez pas à me dire s'il vous manque un bon de commande ou une référence
            interne pour la mise en paiement.

            {fin}
            {booker}
            Booking — {agence}
            """
    return subject.format(**fields), render(body, fields)


def fr_absence(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """An automatic out-of-office reply from someone at a venue."""
    fields = fr_fields(gig)
    fields["debut"] = fr_day(gig.day)
    fields["retour"] = fr_day(later(gig.day, rng, 6, 20))
    if rng.random() < 0.6:
        subject = "Réponse automatique : absence"
        body = """
            Bonjour,

            Je serai hors du bureau du {debut} au {retour} inclus, sans accès régulier à ma
            messagerie. Pour toute question urgente concernant la programmation {de_salle},
            merci d'écrire à {collegue}, qui assure le relais. Je traiterai votre message à mon
            retour.

            Bien cordialement,
            {contact_nom}
            {role} — {salle} ({ville})
            """
    else:
        subject = "Absence du bureau jusqu'au {retour}"
        body = """
            Bonjour et merci pour votre message.

            Le bureau {de_salle} est fermé du {debut} au {retour} pour les congés de l'équipe.
            Les messages reçus pendant cette période seront traités par ordre d'arrivée à la
            réouverture. Pour les artistes programmés pendant ces dates, la régie reste joignable
            à l'adresse habituelle.

            L'équipe {de_salle}, {ville}
            """
    return subject.format(**fields), render(body, fields)


def fr_refusal(rng: random.Random, gig: Gig, variant: int | None = None) -> tuple[str, str]:
    """A venue turning a proposal down."""
    fields = fr_fields(gig)
    fields["fin_saison"] = FR_MONTHS[rng.choice([5, 6, 11])]
    variant = rng.choice([0, 0, 1]) if variant is None else variant
    if variant == 0:
        subject = "Re: proposition {groupe}"
        body = """
            Bonjour {contact},

            Merci pour votre proposition concernant {groupe}, que nous avons écoutée avec
            attention. Malheureusement, notre programmation jusqu'en {fin_saison} est désormais
            bouclée et nous ne pourrons pas donner suite cette fois-ci. N'hésitez pas à nous
            tenir informés de l'actualité du projet.

            Belle continuation,
            {contact_nom}
            Programmation — {salle}, {ville}
            """
    else:
        subject = "Votre proposition pour {groupe}"
        body = """
            Bonjour,

            Nous vous remercions pour l'envoi du dossier {de_groupe}. Après une écoute en équipe,
            le projet ne correspond pas à la ligne artistique que nous développons en ce moment
            {a_salle}. Nous ne donnerons donc pas suite, mais nous vous souhaitons une très belle
            tournée.

            Cordialement,
            {contact_nom}
            {salle} ({ville})
            """
    return subject.format(**fields), render(body, fields)


def fr_newsletter(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A venue's monthly listing."""
    fields = fr_fields(gig)
    days = sorted(rng.sample(range(2, 29), 4))
    bands = rng.sample(FR_BANDS, 3)
    styles = rng.sample(FR_STYLES, 3)
    month = gig.day.month
    lines = [
        f"{BULLET} {fr_day(date(2026, month, d))} : {b} ({s})"
        for d, b, s in zip(days[:3], bands, styles, strict=True)
    ]
    lines.append(f"{BULLET} {fr_day(date(2026, month, days[3]))} : scène ouverte, entrée libre")
    fields["programme"] = "\n".join(lines)
    subject = rng.choice(["Agenda de {mois} — {salle}", "La lettre {de_salle} — {mois}"])
    body = (
        render("Bonjour à toutes et à tous,\n\nVoici le programme {de_mois} {a_salle}, {ville} :",
               fields)
        + "\n"
        + fields["programme"]
        + "\n\n"
        + render("""
            Billetterie en ligne et au bar les soirs de concert. Tarif réduit pour les adhérents,
            les étudiants et les demandeurs d'emploi. Le bar ouvre une heure avant chaque
            concert.

            À très vite,
            L'équipe {de_salle}
            """, fields)
    )
    return subject.format(**fields), body


def fr_day_sheet(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A venue's schedule for the day of a concert."""
    fields = fr_fields(gig)
    fields["booker_prenom"] = gig.booker.split()[0]
    _, fields["regisseur"] = person(rng, "fr")
    subject = "Feuille de route — {date} {a_salle}"
    body = """
        Bonjour {booker_prenom},

        Voici le déroulé du {date_longue} {a_salle} ({ville}) :
        14 h : arrivée et déchargement
        15 h : installation du plateau
        17 h : balances {de_groupe}
        19 h 30 : repas en loge
        20 h 30 : ouverture des portes
        21 h 30 : concert, 1 h 15 environ

        {regisseur}, à la régie, vous accueillera à l'entrée des artistes. Merci de me
        confirmer le nombre de personnes en tournée.

        À bientôt,
        {contact_nom}
        {role} — {salle}
        """
    return subject.format(**fields), render(body, fields)


def fr_acknowledgement(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A venue's acknowledgement of a proposal."""
    fields = fr_fields(gig)
    fields["delai"] = rng.choice(["deux semaines", "trois semaines", "un mois", "la fin du mois"])
    subject = rng.choice(["Re: {groupe} — proposition de date", "Accusé de réception"])
    body = """
        Bonjour,

        Nous avons bien reçu votre message au sujet {de_groupe} et l'avons transmis à l'équipe
        de programmation {de_salle}. Nous recevons de nombreuses propositions et ne pouvons
        malheureusement pas répondre à chacune individuellement. Si le projet est retenu, nous
        reviendrons vers vous d'ici {delai}.

        Bien cordialement,
        Le secrétariat {de_salle}, {ville}
        """
    return subject.format(**fields), render(body, fields)


def fr_contract(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A booker sending the contract for a concert."""
    fields = fr_fields(gig)
    fields["limite"] = fr_day(gig.day - timedelta(days=rng.randrange(20, 45)))
    fields["fin"] = rng.choice(FR_CLOSINGS)
    subject = "Contrat de cession — {groupe} le {date}"
    body = """
        Bonjour {contact},

        Vous trouverez ci-joint le contrat de cession pour le concert {de_groupe} le {date}
        {a_salle} ({ville}), en deux exemplaires. Merci de nous en retourner un exemplaire signé
        et paraphé avant le {limite}, accompagné de l'attestation de licence d'entrepreneur de
        spectacles de la salle.

        {fin}
        {booker}
        Booking — {agence}
        """
    return subject.format(**fields), render(body, fields)


# ---------------------------------------------------------------------------------------------
# English templates
# ---------------------------------------------------------------------------------------------

EN_HOUSE_STYLE = {
    "hello": "Hello,",
    "bye": "Best wishes,",
    "booker": "Camille Roux",
    "agency": "Marée Haute Prod",
}
EN_GREETINGS = ["Hi {contact},", "Hi {contact},", "Hello {contact},", "Dear {contact},"]
EN_CLOSINGS = ["Best,", "All the best,", "Cheers,", "Kind regards,", "Thanks,"]


def en_confirmation(rng: random.Random, gig: Gig, variant: int | None = None) -> tuple[str, str]:
    """A booking confirmation; variant 0, the commonest, is the near-duplicate one."""
    fields = en_fields(gig)
    fields["hello"] = rng.choice(EN_GREETINGS).format(**fields)
    fields["bye"] = rng.choice(EN_CLOSINGS)
    variant = rng.choice([0, 0, 1]) if variant is None else variant
    if variant == 0:
        fields.update(EN_HOUSE_STYLE)
        subject = "Confirmed: {venue}, {date}"
        body = """
            {hello}

            Great news: the {date} show at {venue} in {town} is confirmed. Doors at 7.30pm, band
            on at 8.30pm. The contract will follow this week, and invoice {invoice} for the
            guarantee of £{fee} will be sent after the show.

            Thanks again for having us, looking forward to it.

            {bye}
            {booker}
            {agency}
            """
    else:
        subject = "Re: {band} — {date}"
        body = """
            {hello}

            Perfect, let's lock it in: {band} at {venue}, {town}, on {long_date}. £{fee}
            guarantee plus a hot meal and drinks for the party. I'll send the contract over
            shortly, and invoice {invoice} will follow the show.

            {bye}
            {booker}
            {agency}
            """
    return subject.format(**fields), render(body, fields)


def en_invoice(rng: random.Random, gig: Gig, variant: int | None = None) -> tuple[str, str]:
    """An invoice sent after a show."""
    fields = en_fields(gig)
    fields["bye"] = rng.choice(EN_CLOSINGS)
    variant = rng.choice([0, 0, 1]) if variant is None else variant
    if variant == 0:
        fields.update(EN_HOUSE_STYLE)
        subject = "Invoice {invoice} — {band}"
        body = """
            Hello,

            Please find attached invoice {invoice} for £{fee}, covering {bands} performance at
            {venue}, {town} on {date}. Payment is due by bank transfer within 30 days; our
            account details are at the bottom of the invoice.

            Thanks again for a lovely night,
            {booker}
            {agency}
            """
    else:
        subject = "{venue} — invoice for {date}"
        body = """
            Hi {contact},

            As agreed, here's invoice {invoice} for the show on {date} at {venue} in {town}. The
            total is £{fee}, no VAT charged. Let me know if your finance team needs a purchase
            order number or any other reference on it.

            {bye}
            {booker}
            {agency}
            """
    return subject.format(**fields), render(body, fields)


def en_absence(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """An automatic out-of-office reply from someone at a venue."""
    fields = en_fields(gig)
    fields["start"] = en_day(gig.day)
    fields["back"] = en_day(later(gig.day, rng, 6, 20))
    if rng.random() < 0.6:
        subject = "Automatic reply: Out of office"
        body = """
            Hello,

            Thanks for your email. I'm out of the office from {start} to {back} with limited
            access to email. For anything urgent regarding programming at {venue}, please
            contact {colleague}, who is covering for me. Otherwise I'll reply when I'm back.

            Best wishes,
            {contact_full}
            {role}, {venue}, {town}
            """
    else:
        subject = "Out of office until {back}"
        body = """
            Hi,

            {the_venue} office is closed from {start} to {back} while the team takes a break.
            Messages will be dealt with in the order they arrived when we reopen. If you're an
            artist playing with us during this period, the production team can still be reached
            at the usual address.

            {the_venue} team, {town}
            """
    return subject.format(**fields), render(body, fields)


def en_refusal(rng: random.Random, gig: Gig, variant: int | None = None) -> tuple[str, str]:
    """A venue turning a proposal down."""
    fields = en_fields(gig)
    fields["month_end"] = EN_MONTHS[rng.choice([5, 6, 11])]
    variant = rng.choice([0, 0, 1]) if variant is None else variant
    if variant == 0:
        subject = "Re: {band} — booking enquiry"
        body = """
            Hi {contact},

            Thanks for thinking of us for {band}; we had a good listen in the office.
            Unfortunately our calendar is full until {month_end} and we won't be able to offer
            a date this time round. Do keep us posted on what the band does next.

            All the best,
            {contact_full}
            Programming, {venue}, {town}
            """
    else:
        subject = "Your enquiry about {band}"
        body = """
            Hello,

            Thank you for sending over {bands} EPK. After listening as a team, we don't think
            the project fits what we're programming at {venue} at the moment, so we'll pass this
            time. We wish you every success with the tour.

            Kind regards,
            {contact_full}
            {venue}, {town}
            """
    return subject.format(**fields), render(body, fields)


def en_newsletter(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A venue's monthly listing."""
    fields = en_fields(gig)
    days = sorted(rng.sample(range(2, 29), 4))
    bands = rng.sample(EN_BANDS, 3)
    styles = rng.sample(EN_STYLES, 3)
    month = gig.day.month
    lines = [
        f"{BULLET} {en_day(date(2026, month, d))}: {b} ({s})"
        for d, b, s in zip(days[:3], bands, styles, strict=True)
    ]
    lines.append(f"{BULLET} {en_day(date(2026, month, days[3]))}: open mic night, free entry")
    subject = rng.choice(["What's on in {month} at {venue}", "{venue} newsletter — {month}"])
    body = (
        render("Hello everyone,\n\nHere's what's coming up at {venue}, {town} in {month}:", fields)
        + "\n"
        + "\n".join(lines)
        + "\n\n"
        + render("""
            Tickets are available online and from the bar. Members get a discount on every
            show, and the bar opens an hour before doors.

            See you down the front,
            {the_venue} team
            """, fields)
    )
    return subject.format(**fields), body


def en_day_sheet(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A venue's schedule for the day of a show."""
    fields = en_fields(gig)
    fields["booker_first"] = gig.booker.split()[0]
    _, fields["stage_manager"] = person(rng, "en")
    subject = "Day sheet — {venue}, {date}"
    body = """
        Hi {booker_first},

        Here's the plan for {long_date} at {venue}, {town}:
        3pm: load-in
        4pm: stage set-up
        5pm: soundcheck, {band}
        6.30pm: hot meal in the green room
        7.30pm: doors
        8.30pm: {band} on stage (75 minutes)
        11pm: curfew

        Our stage manager, {stage_manager}, will meet you at the stage door. Please confirm how
        many people are travelling.

        Cheers,
        {contact_full}
        {role}, {venue}
        """
    return subject.format(**fields), render(body, fields)


def en_acknowledgement(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A venue's acknowledgement of a proposal."""
    fields = en_fields(gig)
    fields["delay"] = rng.choice(
        ["within two weeks", "within three weeks", "within a month", "by the end of the month"]
    )
    subject = rng.choice(["Re: {band} — date request", "Thanks for your submission"])
    body = """
        Hi,

        Thanks for getting in touch about {band}. Your message has been passed on to the
        programming team at {venue}. We receive a lot of submissions and sadly can't reply to
        each one individually; if we'd like to take things further, we'll be in touch
        {delay}.

        Best wishes,
        {the_venue} office, {town}
        """
    return subject.format(**fields), render(body, fields)


def en_contract(rng: random.Random, gig: Gig) -> tuple[str, str]:
    """A booker sending the contract for a show."""
    fields = en_fields(gig)
    fields["deadline"] = en_day(gig.day - timedelta(days=rng.randrange(20, 45)))
    fields["bye"] = rng.choice(EN_CLOSINGS)
    subject = "Contract — {band} at {venue}, {date}"
    body = """
        Hi {contact},

        Please find attached two copies of the contract for {band} at {venue}, {town} on
        {date}. Could you sign and initial one copy and return it to us by {deadline}? A scan
        by email is fine, no need to post the original.

        {bye}
        {booker}
        {agency}
        """
    return subject.format(**fields), render(body, fields)


FAMILIES = {
    "fr": {
        "confirmation": fr_confirmation,
        "invoice": fr_invoice,
        "absence": fr_absence,
        "refusal": fr_refusal,
        "newsletter": fr_newsletter,
        "day_sheet": fr_day_sheet,
        "acknowledgement": fr_acknowledgement,
        "contract": fr_contract,
    },
    "en": {
        "confirmation": en_confirmation,
        "invoice": en_invoice,
        "absence": en_absence,
        "refusal": en_refusal,
        "newsletter": en_newsletter,
        "day_sheet": en_day_sheet,
        "acknowledgement": en_acknowledgement,
        "contract": en_contract,
    },
}


def reflow(text: str) -> str:
    """Wrapped prose joined back into one line a paragraph; short lines stay as they are.

    A line of ``WRAP_WIDTH`` characters or more goes on in the next non-empty line; greetings,
    closings, signatures and schedules are shorter and keep their line breaks.
    """
    out: list[str] = []
    joining = False
    for line in text.split("\n"):
        if joining and line:
            out[-1] += " " + line
        else:
            out.append(line)
        joining = len(line) >= WRAP_WIDTH
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Emails written for the queries: French
# ---------------------------------------------------------------------------------------------


def fr_pinned(rng: random.Random, invoices: InvoiceBook) -> list[Email]:
    """Targets that are near-duplicates of the templates, with their telling details fixed."""
    specs = [
        ("x_quimperle", fr_confirmation, 0, Venue("Quimperlé", "Le ", "Coat-Kaër"),
         date(2026, 3, 12), "FAC-2026-0502", "Lysandre"),
        ("x_fac0417", fr_invoice, 0, Venue("Lorient", "L'", "Hydrophone"),
         date(2026, 2, 20), "FAC-2026-0417", "Kalima"),
        ("x_jardin", fr_confirmation, 0, Venue("Rennes", "Le ", "Jardin Moderne"),
         date(2026, 4, 9), None, "Brume"),
        ("x_bikini", fr_contract, None, Venue("Toulouse", "Le ", "Bikini"),
         date(2026, 10, 16), None, "Orage Mécanique"),
        ("x_rodia", fr_day_sheet, None, Venue("Besançon", "La ", "Rodia"),
         date(2026, 11, 7), None, "Les Frères Tanguy"),
        ("x_coop", fr_refusal, 0, Venue("Clermont-Ferrand", "La ", "Coopérative de Mai"),
         date(2026, 5, 15), None, "Sillage"),
        ("x_fac1187", fr_invoice, 1, Venue("Saint-Étienne", "Le ", "Fil"),
         date(2025, 11, 22), "FAC-2025-1187", "Thalie"),
        ("x_nef", fr_newsletter, None, Venue("Angoulême", "La ", "Nef"),
         date(2026, 9, 1), None, None),
    ]
    return [_pinned(rng, invoices, "fr", *spec) for spec in specs]


def _pinned(
    rng: random.Random,
    invoices: InvoiceBook,
    lang: str,
    key: str,
    family: Callable[..., tuple[str, str]],
    variant: int | None,
    venue: Venue,
    day: date,
    invoice: str | None,
    band: str | None,
) -> Email:
    """One template-made target with its venue, date, invoice and band fixed."""
    gig = make_gig(rng, lang, invoices, venue=venue, day=day, invoice=invoice, band=band)
    if variant is None:
        subject, text = family(rng, gig)
    else:
        subject, text = family(rng, gig, variant)
    return Email(key, lang, subject, text)


FR_EXACT_TARGETS = [
    mail("x_gwenaelle", "fr", "Accueil du 7 février — infos pratiques", """
        Bonjour Camille,

        Je m'occupe de l'accueil des artistes au Run Ar Puns pour votre venue. Pourriez-vous
        m'envoyer d'ici lundi les noms des personnes en tournée, ainsi que les éventuelles
        allergies alimentaires ? Nous préparons les badges nominatifs et le dîner en conséquence.

        Le lieu se trouve à la sortie de Châteaulin, direction Port-Launay ; l'entrée des
        artistes est à l'arrière du bâtiment.

        Merci et à très vite,
        Gwenaëlle Le Floch
        Accueil artistes — Run Ar Puns, Châteaulin
        """),
    mail("x_stereolux", "fr", "Fiche technique et plan de scène — 19 novembre", """
        Bonjour,

        Je suis régisseur général à Stereolux et je prépare la soirée du 19 novembre en salle
        Micro. Pourriez-vous me faire parvenir la fiche technique à jour ainsi que le plan de
        scène ? La version que nous avons date de 2023 et mentionne un clavier qui ne figure
        plus sur les photos récentes du groupe.

        Nous fournissons la console, les retours et les pieds de micro ; la batterie reste à
        votre charge.

        Merci d'avance,
        Antoine Perrot
        Régie générale — Stereolux, Nantes
        """),
    mail("x_morlaix", "fr", "Sillage au printemps ?", """
        Bonjour Camille,

        Merci pour le lien vers le nouveau clip, on a beaucoup aimé au bureau. Le SEW aimerait
        accueillir Sillage au printemps, idéalement un vendredi d'avril. Notre jauge debout est
        de 450 personnes, ce qui nous semble cohérent avec leur public breton.

        Pouvez-vous m'indiquer vos disponibilités sur avril et me transmettre vos conditions ?

        Bien à vous,
        Lénaïg Cariou
        Programmation — Le SEW, Morlaix
        """),
    mail("x_kerherve", "fr", "Fête du port fin juillet", """
        Salut Camille,

        C'est Yann, de l'association Ar Vag. On organise comme chaque année la fête du port de
        Douarnenez le dernier week-end de juillet et on cherche un groupe pour le samedi soir
        sur le quai. Ton duo Paloma pourrait coller parfaitement. On a un petit budget, autour
        de 900 €, avec le repas et le logement chez l'habitant.

        Dis-moi si ça t'intéresse, je t'envoie les détails.

        Yann Kerhervé
        Association Ar Vag — Douarnenez
        """),
    mail("x_laiterie", "fr", "Option sur le 23 octobre", """
        Bonjour Camille,

        Je reviens vers vous au sujet d'Orage Mécanique : nous pouvons poser une option sur le
        23 octobre dans le club de La Laiterie, à Strasbourg (jauge 400). L'option court
        jusqu'au 15 juin ; au-delà, nous devrons libérer la date pour une autre production.

        Pouvez-vous me dire rapidement si le groupe passe dans l'Est à cette période ?

        Cordialement,
        Mathilde Schaeffer
        Programmation — La Laiterie
        """),
    mail("x_sacem", "fr", "Programme des œuvres — 14 mars", """
        Bonjour,

        Pour la déclaration SACEM de la soirée du 14 mars, pourriez-vous nous transmettre le
        programme des œuvres jouées par Brume (titres, compositeurs et durées approximatives) ?
        Un simple tableau suffit. Sans ce document, l'organisme applique un forfait qui nous
        revient plus cher.

        Merci d'avance et à bientôt au Temps Machine,
        Claire Bonnet
        Administration — Le Temps Machine, Joué-lès-Tours
        """),
    mail("x_guso", "fr", "Rémunération des musiciens de Kalima", """
        Bonjour Camille,

        Nous sommes une petite association sans licence d'entrepreneur de spectacles : nous
        passerons donc par le Guso pour rémunérer les musiciens de Kalima. Pourriez-vous
        m'envoyer, pour chacun, le numéro de sécurité sociale, le numéro Congés Spectacles et
        l'adresse postale ? Les déclarations doivent être faites au plus tard huit jours après
        la date.

        Merci beaucoup,
        Odile Marchand
        Trésorière — Les Amis du Kiosque, Concarneau
        """),
    mail("x_laval", "fr", "Chambres pour le 28 novembre", """
        Bonjour,

        Pour votre venue au 6par4 le 28 novembre, nous avons réservé quatre chambres doubles à
        l'Hôtel de la Gare, à Laval, à cinq minutes à pied de la salle. Les petits-déjeuners
        sont inclus et la réservation est au nom de l'association. Merci de me confirmer le
        nombre exact de personnes, et si quelqu'un a besoin d'une chambre individuelle.

        À bientôt,
        Romain Lefèvre
        Production — Le 6par4
        """),
    mail("x_maelle", "fr", "Une soirée partagée dans le Trégor ?", """
        Bonjour Camille,

        Je m'occupe de Thalie, un quartet jazz de Lannion. J'ai vu que Paloma Duo tournait dans
        le Trégor en mai : est-ce que vous seriez partants pour partager une soirée ? On a une
        piste au Carré Magique, qui préfère programmer deux formations le même soir.

        Je t'envoie nos liens d'écoute si ça te tente.

        Belle journée,
        Maëlle Guillou
        Booking — Thalie
        """),
    mail("x_saintbrieuc", "fr", "Atelier avec un lycée le 6 février", """
        Bonjour,

        La Citrouille, à Saint-Brieuc, accueille Brume le 6 février. En parallèle du concert,
        nous aimerions organiser un atelier d'écriture avec une classe de première du lycée
        Rabelais l'après-midi même. Est-ce qu'un ou deux membres du groupe seraient disponibles
        entre 14 h et 16 h ? L'intervention serait rémunérée à part, sur la base de 150 € par
        intervenant.

        Bien cordialement,
        Élodie Le Gall
        Action culturelle — La Citrouille
        """),
    mail("x_carhaix", "fr", "Conditions pour le 18 juillet", """
        Bonjour Camille,

        Suite à notre échange, voici les conditions pour la venue de Kalima au festival de
        Carhaix le 18 juillet : cachet de 3 500 € HT, catering et hébergement pris en charge,
        et une clause d'exclusivité territoriale (pas d'autre concert dans un rayon de 100 km
        entre le 1er juin et le 31 août).

        Merci de me dire si cette clause pose problème avant que nous rédigions le contrat.

        Bien à vous,
        Pierre-Yves Le Roux
        Programmation — Festival des Vieilles Charrues
        """),
    mail("x_iveco", "fr", "Accès au déchargement le 2 avril", """
        Bonjour,

        Petite question logistique pour le 2 avril au Novomax : nous voyageons cette fois avec
        un camion Iveco de 20 m³, haut de 3,20 m. L'accès à la cour de déchargement passe-t-il
        sous le porche, ou faut-il prévoir de décharger dans la rue ? Si c'est le cas, y a-t-il
        une autorisation à demander à la mairie de Quimper ?

        Merci,
        Camille Roux
        Booking — Marée Haute Prod
        """),
]


FR_INFLECTION_TARGETS = [
    mail("i_brest", "fr", "Soirées des 3 et 4 avril à La Carène", """
        Bonjour Camille,

        C'est avec beaucoup de regret que je vous écris : suite à la défection du partenaire
        qui coproduisait le week-end, nous avons annulé les deux concerts prévus les 3 et 4
        avril à La Carène, à Brest. Les frais déjà engagés par le groupe (billets de train non
        échangeables) vous seront bien sûr dédommagés sur présentation des justificatifs.

        Je reste bien sûr à votre disposition pour en parler de vive voix.

        Amitiés,
        Solène Tanguy
        Production — La Carène
        """),
    mail("i_nantes", "fr", "Changement d'horaire le 21 mars", """
        Bonjour,

        Petite information avant la communication publique : à la demande de la préfecture, la
        soirée du 21 mars au Ferrailleur, à Nantes, commencera à 19 h au lieu de 21 h. La
        billetterie proposera de rembourser le billet à toutes celles et ceux qui ne pourront
        pas venir plus tôt, sur simple demande avant le 15 mars. Le concert de Lysandre est
        évidemment maintenu.

        Je vous tiens au courant du nombre de demandes.

        Bonne journée,
        Julie Fournier
        Billetterie — Le Ferrailleur
        """),
    mail("i_lorient", "fr", "Re: logement après le 9 mai", """
        Bonjour Camille,

        Pas d'inquiétude pour la nuit du 9 mai : nous hébergerons les six musiciens et le
        technicien au gîte de la Base, à Lorient, à dix minutes de l'Hydrophone. Il y a trois
        chambres, draps fournis, et une cuisine si vous voulez préparer quelque chose en
        rentrant.

        Les clés vous seront remises par notre régisseur à la fin de la soirée.

        À bientôt,
        Gaëlle Morvan
        Accueil — L'Hydrophone, Lorient
        """),
    mail("i_angers", "fr", "Date du 14 novembre au Chabada", """
        Bonjour,

        Les travaux de mise aux normes de la grande salle du Chabada ont pris du retard et ne
        seront pas terminés avant la fin novembre. Nous sommes donc contraints de reporter la
        soirée du 14 novembre avec Les Frères Tanguy. Nous proposons le 23 janvier ou le 6
        février, aux mêmes conditions ; les billets déjà vendus resteront valables.

        Dites-moi quelle date convient au groupe.

        Cordialement,
        Benoît Girard
        Programmation — Le Chabada, Angers
        """),
    mail("i_rouen", "fr", "Acompte — date du 17 avril au 106", """
        Bonjour Camille,

        Je vous confirme que l'acompte de 30 % prévu au contrat, soit 450 €, a été versé ce
        matin sur le compte de Marée Haute Prod. Le solde sera réglé le soir de la date, à
        Rouen, sur présentation de la facture.

        Le virement devrait apparaître d'ici deux à trois jours ouvrés. N'hésitez pas à me
        prévenir si ce n'est pas le cas.

        Bien cordialement,
        Nadia Benali
        Administration — Le 106
        """),
    mail("i_caen", "fr", "Catering — Cargö 11 décembre", """
        Bonjour,

        Pour le dîner du 11 décembre au Cargö, à Caen, nous serons sept à table. Trois
        musiciens ne mangent ni viande ni poisson : pourriez-vous prévoir une option
        végétarienne pour eux ? Le batteur est par ailleurs allergique aux fruits à coque.

        Pour le reste, tout nous va très bien, et merci pour la bière locale la dernière fois !

        À bientôt,
        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("i_tours", "fr", "Proposition radio — 30 janvier", """
        Bonjour Camille,

        Radio Béton aimerait enregistrer le concert de Mordicus le 30 janvier au Temps Machine,
        à Tours, pour le diffuser dans son émission du dimanche soir. Il s'agirait d'une prise
        multipiste directement depuis la console, sans caméra. Le groupe recevrait les pistes
        brutes et garderait un droit de regard sur le mixage avant diffusion.

        Est-ce que cela vous paraît envisageable ?

        Belle journée,
        Hugo Lemaire
        Communication — Le Temps Machine
        """),
    mail("i_dijon", "fr", "Merch à La Vapeur", """
        Bonjour,

        Pour le 8 mai à La Vapeur, vous pourrez vendre vos disques, vinyles et t-shirts sur une
        table installée dans le hall, à côté du vestiaire. Nous ne prenons aucune commission,
        mais il faudra une personne de votre équipe pour tenir le stand : nos bénévoles ne
        manipulent pas d'argent.

        Un terminal de paiement par carte peut être prêté sur demande.

        Cordialement,
        Léa Dumont
        Accueil public — La Vapeur, Dijon
        """),
    mail("i_grenoble", "fr", "Liste d'invités — Belle Électrique", """
        Bonjour Camille,

        Pour la date du 25 avril à La Belle Électrique, le groupe peut inviter dix personnes au
        total. Merci de m'envoyer les noms et prénoms avant 17 h le jour même ; ils seront
        déposés à la caisse et remis sur présentation d'une pièce d'identité. Les
        professionnels (presse, programmateurs) ne comptent pas dans ce quota, il suffit de me
        les signaler à part.

        Merci,
        Inès Garnier
        Billetterie — La Belle Électrique, Grenoble
        """),
    mail("i_toulouse", "fr", "Communication — date du 12 février", """
        Bonjour,

        Nous lançons la communication pour le concert de Kalima au Metronum, à Toulouse, le 12
        février. Pourriez-vous nous envoyer une trentaine d'affiches A3 et une dizaine au
        format 40 x 60 pour les commerces du quartier ? Si vous n'en avez plus en stock, un
        fichier PDF haute définition sans date nous permettrait de les imprimer ici.

        Merci d'avance,
        Thomas Roussel
        Communication — Le Metronum
        """),
    mail("i_lyon", "fr", "Demande presse — Transbordeur 5 mars", """
        Bonjour Camille,

        Une journaliste du Progrès souhaiterait interviewer Julien, le chanteur de Sillage,
        avant le concert du 5 mars au Transbordeur, à Lyon. Vingt minutes suffiraient, en loge
        vers 18 h, ou au téléphone la veille si c'est plus simple pour lui. L'article
        paraîtrait dans l'édition du week-end avec une photo de la tournée.

        Tu me dis si c'est possible ?

        Merci,
        Amandine Roche
        Relations presse — Le Transbordeur
        """),
    mail("i_bordeaux", "fr", "Accréditation photo — Rocher de Palmer", """
        Bonjour,

        Un photographe du collectif Bordeaux Live aimerait photographier le concert de Lysandre
        le 19 avril au Rocher de Palmer. Il connaît les règles habituelles : trois premiers
        morceaux, sans flash, depuis le bord de scène. Il enverrait ensuite une sélection au
        groupe, libre d'utilisation pour sa communication à condition de le créditer.

        Pouvez-vous me donner votre accord d'ici vendredi ?

        Cordialement,
        Sarah Lopez
        Presse — Le Rocher de Palmer
        """),
    mail("i_montpellier", "fr", "Accès Victoire 2 — 27 mars", """
        Bonjour,

        Pour votre arrivée le 27 mars à Victoire 2, à Montpellier, le camion pourra stationner
        sur l'aire de livraison à l'arrière du bâtiment, de 14 h jusqu'au lendemain matin.
        Merci de me communiquer l'immatriculation pour que je prévienne le gardien du domaine.
        Les voitures personnelles, elles, iront sur le parking public, à deux minutes à pied.

        À bientôt,
        Marc Giraud
        Régie — Victoire 2
        """),
    mail("i_marseille", "fr", "Arrivée retardée — Espace Julien", """
        Bonjour Nicolas,

        Mauvaise nouvelle : notre TGV est retardé d'environ deux heures à cause d'un incident
        sur la ligne, et nous n'arriverons à la gare Saint-Charles, à Marseille, que vers
        17 h 30. Pourrait-on décaler nos balances à l'Espace Julien après celles de la première
        partie ? Nous serons prêts à jouer à l'heure prévue, aucun souci de ce côté-là.

        Désolée pour le contretemps, je vous tiens informé.

        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("i_metz", "fr", "Niveau sonore à la BAM", """
        Bonjour,

        Petit rappel réglementaire avant votre venue à la BAM, à Metz, le 15 mai : nous devons
        limiter le volume à 102 dB(A) en moyenne sur quinze minutes, mesuré en régie. Un
        afficheur sera placé à côté de la console façade. Votre ingénieur du son est le
        bienvenu pour en discuter avec notre équipe en amont s'il le souhaite.

        Des bouchons d'oreilles sont distribués gratuitement au public.

        Cordialement,
        Vincent Muller
        Régie générale — La BAM
        """),
    mail("i_nancy", "fr", "Matériel laissé sur place — Autre Canal", """
        Bonjour Camille,

        Le groupe laissera ses instruments et ses amplis dans notre studio entre les deux dates
        de la semaine prochaine. Pour que nous puissions les assurer pendant ces trois jours,
        pourriez-vous nous transmettre une liste du matériel avec les numéros de série et une
        valeur approximative pour chaque élément ?

        Sans cette liste, notre contrat ne couvre que le matériel appartenant à L'Autre Canal,
        à Nancy.

        Merci,
        Julien Schmitt
        Production — L'Autre Canal
        """),
    mail("i_poitiers", "fr", "Résidence au Confort Moderne", """
        Bonjour,

        Bonne nouvelle pour la résidence de Brume : le groupe pourra répéter sur la scène du
        Confort Moderne, à Poitiers, du 2 au 5 mars, de 10 h à 18 h. Un technicien son sera
        présent les deux derniers jours pour travailler les retours et le nouveau spectacle
        lumière. La sortie de résidence aura lieu le 5 au soir devant une cinquantaine
        d'invités.

        Cordialement,
        Aurélie Chevalier
        Production — Le Confort Moderne
        """),
    mail("i_limoges", "fr", "Point préventes — CCM John Lennon", """
        Bonjour Camille,

        Je préfère être transparent : à trois semaines de la date du 20 mars, nous n'avons
        vendu que 42 billets sur une jauge de 300 à la CCM John Lennon, à Limoges. Nous allons
        renforcer l'affichage et relancer les réseaux sociaux, mais si le groupe peut relayer
        davantage de son côté, ce serait précieux.

        On refait un point la semaine prochaine ?

        Amicalement,
        Fabien Rey
        Programmation — CCM John Lennon
        """),
    mail("i_lemans", "fr", "Durée du set — 4 avril", """
        Bonjour,

        Changement de programme : l'autre groupe de la soirée s'est désisté et nous ne le
        remplacerons pas. Les Marées Basses pourraient-ils prolonger leur set d'une vingtaine
        de minutes, soit 1 h 30 au lieu de 1 h 10 ? Nous comprendrions que cela demande un peu
        de préparation.

        La soirée aura lieu comme prévu aux Saulnières, au Mans, le 4 avril.

        Bien à vous,
        Cécile Marchal
        Programmation — Les Saulnières
        """),
    mail("i_vannes", "fr", "Backline pour le 22 mai", """
        Bonjour Camille,

        Comme vous venez en train, pas de souci : nous pouvons vous prêter une batterie
        complète pour la date du 22 mai à L'Échonova, près de Vannes (grosse caisse 22 pouces,
        deux toms, caisse claire, pieds et cymbales). Elle appartient à l'association et sort
        tout juste de révision. Merci de nous préciser si le batteur a des préférences de
        réglage.

        Belle journée,
        Kévin Le Bihan
        Régie — L'Échonova
        """),
]


FR_PARAPHRASE_TARGETS = [
    mail("p_reims", "fr", "Kalima — nouvelles de Youssef", """
        Bonjour Sandrine,

        Youssef a une laryngite sévère depuis dimanche et le médecin lui impose dix jours de
        repos vocal complet. Il ne pourra donc pas tenir la date du 7 mars à La Cartonnerie.
        Nous sommes navrés de prévenir si tard. Le groupe tient vraiment à venir à Reims :
        serait-il possible de trouver une nouvelle date au printemps ? Nous prendrons à notre
        charge les frais d'impression des nouvelles affiches.

        Avec nos excuses,
        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("p_rennes_ubu", "fr", "Dégât des eaux — 28 février", """
        Bonjour Camille,

        Une canalisation a cédé cette nuit au-dessus de la scène de L'Ubu et l'eau a traversé
        le plafond : plancher gondolé, console hors service, électricité coupée par sécurité.
        L'expert passe jeudi, mais il est déjà certain que le lieu ne rouvrira pas avant
        plusieurs semaines.

        Nous cherchons une solution de repli pour le 28 février avec nos partenaires rennais,
        je reviens vers vous très vite.

        Désolé,
        Arnaud Perrin
        Programmation — L'Ubu, Rennes
        """),
    mail("p_marseille_loges", "fr", "Loges — à savoir avant votre venue", """
        Bonjour,

        Je préfère vous prévenir avant le 16 avril : nos loges sont en travaux et nous
        n'aurons ni douche ni eau chaude cette semaine-là, seulement un lavabo et des
        toilettes. Si le groupe tient à se doucher après le set, la piscine municipale, juste
        en face du Makeda, accepte de vous ouvrir ses vestiaires jusqu'à 23 h.

        Toutes nos excuses pour ce confort réduit.

        Cordialement,
        Karim Haddad
        Accueil — Le Makeda, Marseille
        """),
    mail("p_basse", "fr", "Basse restée en loge ?", """
        Bonjour,

        En déchargeant le camion à Rouen ce matin, Mathis s'est rendu compte que sa basse
        Fender, dans un étui noir, manquait à l'appel. Il pense l'avoir laissée derrière le
        canapé de la loge 2 à l'Aéronef, à Lille. Pourriez-vous la mettre de côté ? Nous
        repasserons la chercher mardi en remontant vers Bruxelles.

        Un grand merci,
        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("p_vitre", "fr", "Re: proposition Fanfare Zéphyr", """
        Bonjour Camille,

        Merci pour la proposition, la Fanfare Zéphyr nous plaît énormément. Hélas, notre
        bar-concert ne peut accueillir que 80 personnes et la scène mesure trois mètres sur
        deux : impossible d'y faire tenir onze musiciens et leurs cuivres. Si une formule
        réduite en trio ou en quartet existe, nous serions ravis de la programmer.

        Bien amicalement,
        Hélène Carré
        Le Bistrot des Halles, Vitré
        """),
    mail("p_orleans", "fr", "Complet pour le 10 octobre !", """
        Bonjour Camille,

        Très bonne nouvelle : la jauge de 500 places de L'Astrolabe est atteinte pour Lysandre
        le 10 octobre, trois semaines à l'avance. La vente en ligne est fermée et nous avons
        ouvert une liste d'attente. Si le groupe est d'accord, nous pourrions ajouter une
        seconde représentation le lendemain.

        Bravo à eux !
        Manon Petit
        Billetterie — L'Astrolabe, Orléans
        """),
    mail("p_paternite", "fr", "Réponse automatique : congé paternité", """
        Bonjour,

        Je suis en congé paternité jusqu'au 3 avril inclus et je ne consulterai pas ma
        messagerie pendant cette période. Pour la programmation de La Vapeur, merci d'écrire à
        Léa Dumont ; pour l'administration et les contrats, à Sylvie Caron.

        Merci de votre compréhension, et à très bientôt.

        Thibault Masson
        Programmation — La Vapeur, Dijon
        """),
    mail("p_batteur", "fr", "Changement de batteur chez Brume", """
        Bonjour Karine,

        Petite info avant la tournée de printemps : Mathieu quitte Brume pour se consacrer à
        son autre projet, et c'est Julien Barbier qui le remplace à la batterie dès ce mois-ci.
        Il connaît déjà tout le répertoire. Pensez simplement à mettre son nom sur la liste de
        l'équipe pour les badges et le catering.

        À très vite,
        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("p_tarif", "fr", "Tarif d'entrée pour le 2 juin", """
        Bonjour,

        Nous avons bien reçu la proposition de la salle pour le 2 juin, mais le prix d'entrée
        fixé à 28 € nous inquiète. Le public de Thalie est surtout étudiant et nous craignons
        une salle à moitié vide. Serait-il possible de descendre à 15 € en prévente et 18 € sur
        place, quitte à revoir légèrement le partage de recette ?

        Merci de votre écoute,
        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("p_clavier", "fr", "Re: fiche technique de Paloma Duo", """
        Bonjour Camille,

        J'ai lu la fiche technique avec attention. Je dois vous prévenir que nous ne disposons
        d'aucun instrument à queue ni droit : le seul clavier de la maison est un Nord Stage 3
        avec pédale de sustain. Si votre pianiste tient à un instrument acoustique, il faudra
        en louer un à Nantes, ce qui représente environ 600 € avec l'accordage.

        Cordialement,
        Pascal Hervé
        Régie — Le Lieu Unique
        """),
    mail("p_chapeau", "fr", "Soirée au Bar du Port", """
        Salut Camille,

        On serait ravis d'accueillir Paloma Duo au Bar du Port un jeudi de juin. Par contre, on
        n'a aucun budget fixe : on fonctionne au chapeau. On fait passer une casquette à la fin
        du set et tout ce qui est récolté revient aux musiciennes. Les soirs d'été, ça monte
        souvent à 300 ou 400 €. On offre bien sûr le repas et les boissons.

        Dis-moi si ça leur dit !
        Gaby
        Bar du Port, Saint-Malo
        """),
    mail("p_saison", "fr", "Saison 2027", """
        Bonjour Camille,

        Nous commençons à construire la saison 2027 et l'équipe aimerait beaucoup réinviter Les
        Frères Tanguy, qui étaient passés chez nous en 2024. Auriez-vous des disponibilités
        entre février et avril 2027 ? Nous pourrions proposer les mêmes conditions,
        éventuellement avec une date en décentralisation le lendemain.

        Bien à vous,
        Sandrine Robert
        Programmation — La Cartonnerie, Reims
        """),
    mail("p_chienne", "fr", "Question un peu particulière", """
        Bonjour,

        Question un peu particulière avant le 18 mars : notre guitariste voyage avec sa
        chienne, Praline, une vieille labrador très calme. Serait-il possible qu'elle reste
        dans la loge pendant la soirée ? Elle a son panier et sa gamelle, et quelqu'un de
        l'équipe restera avec elle pendant le set.

        Si ce n'est pas possible, nous trouverons une solution, pas de souci.

        Merci,
        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("p_niort", "fr", "Immobilisés près de Niort", """
        Bonjour Stéphane,

        Le moteur du van a lâché sur l'A10 à hauteur de Niort et nous attendons la dépanneuse
        depuis une heure. Le garage ne pourra pas intervenir avant demain matin. Nous cherchons
        un utilitaire de location pour rejoindre Bordeaux, mais nous ne serons pas au Krakatoa
        avant 19 h au mieux. Pourrait-on installer directement sans balances ?

        Je vous rappelle dès que j'ai du nouveau.

        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("p_aem", "fr", "AEM et bulletins de salaire", """
        Bonjour Nadia,

        Les musiciens de Mordicus me signalent qu'ils n'ont pas encore reçu leurs attestations
        employeur (AEM) ni leurs bulletins de salaire pour la date du 17 avril. France Travail
        les leur réclame pour le calcul de leurs droits d'intermittents. Pourriez-vous demander
        à votre service de paie de les envoyer rapidement ?

        Merci beaucoup,
        Camille Roux
        Booking — Marée Haute Prod
        """),
    mail("p_lyon_festival", "fr", "Date du 26 septembre au Marché Gare", """
        Bonjour Camille,

        Je viens d'apprendre que le festival Lumières Sonores installe sa grande scène sur les
        quais le 26 septembre, exactement à la date que nous avions retenue pour Sillage au
        Marché Gare. Une bonne partie de notre public risque d'y aller, et la presse locale
        n'aura d'yeux que pour lui. Ne vaudrait-il pas mieux décaler au 3 octobre ?

        Dites-moi ce qu'en pense le groupe.

        Bien à vous,
        Yasmine Benhamou
        Programmation — Le Marché Gare, Lyon
        """),
    mail("p_embargo", "fr", "Programmation du printemps — embargo", """
        Bonjour Camille,

        Merci de ne rien communiquer sur la venue de Kalima au Rocher de Palmer avant le 1er
        mars à 10 h : c'est le moment où toute la programmation du printemps sera dévoilée d'un
        coup, avec la presse. D'ici là, pas de post sur les réseaux, pas d'affiche, pas de
        mention sur le site du groupe.

        Merci de relayer auprès des musiciens !
        Sarah Lopez
        Presse — Le Rocher de Palmer
        """),
    mail("p_echeancier", "fr", "Règlement du solde", """
        Bonjour Camille,

        Notre association traverse une période de trésorerie tendue depuis la baisse de la
        subvention régionale. Serait-il envisageable d'échelonner le solde du cachet de Thalie
        (1 600 €) en trois mensualités, en avril, mai et juin ? Je m'engage à vous faire
        parvenir un échéancier signé par notre président.

        Avec mes remerciements,
        Françoise Tessier
        Trésorière — Le Chai, Carcassonne
        """),
    mail("p_gradins", "fr", "Configuration de la salle le 9 avril", """
        Bonjour,

        Pour Paloma Duo le 9 avril, nous installerons le théâtre en configuration gradins, avec
        220 fauteuils numérotés et sans fosse debout. Le placement sera libre à l'intérieur de
        chaque catégorie. Les musiciennes peuvent-elles adapter leur set en conséquence, peut-être
        avec une partie plus intimiste ?

        Cordialement,
        Denis Fabre
        Théâtre de l'Archipel, Perpignan
        """),
    mail("p_accueil", "fr", "Retour sur la date de samedi", """
        Bonjour Fabien,

        Je me permets un message franc après samedi. Les musiciens ont attendu plus de deux
        heures devant la porte fermée, personne n'était là pour les accueillir, et le dîner
        annoncé s'est résumé à un paquet de chips. Le technicien son est arrivé après
        l'ouverture des portes. Nous aimons beaucoup votre lieu, mais ces conditions n'étaient
        pas correctes.

        Pouvons-nous en parler cette semaine ?

        Camille Roux
        Booking — Marée Haute Prod
        """),
]


# ---------------------------------------------------------------------------------------------
# Emails written for the queries: English
# ---------------------------------------------------------------------------------------------


def en_pinned(rng: random.Random, invoices: InvoiceBook) -> list[Email]:
    """Targets that are near-duplicates of the templates, with their telling details fixed."""
    specs = [
        ("x_inv0318", en_invoice, 0, Venue("Bristol", "", "Thekla"),
         date(2026, 3, 6), "INV-2026-0318", "Harbour Lights"),
        ("x_inv0291", en_invoice, 1, Venue("Sheffield", "", "The Leadmill"),
         date(2026, 2, 27), "INV-2026-0291", "Foxglove"),
        ("x_kingtuts", en_confirmation, 0, Venue("Glasgow", "", "King Tut's Wah Wah Hut"),
         date(2026, 5, 14), None, "Mira Vale"),
        ("x_wall", en_confirmation, 1, Venue("Manchester", "", "Band on the Wall"),
         date(2026, 10, 3), None, "Cold Spring Choir"),
        ("x_aberdeen", en_day_sheet, None, Venue("Aberdeen", "", "The Lemon Tree"),
         date(2026, 9, 18), None, "Saltmarsh"),
    ]
    return [_pinned(rng, invoices, "en", *spec) for spec in specs]


EN_EXACT_TARGETS = [
    mail("x_hebden", "en", "Trades Club — autumn date for Mira Vale?", """
        Hi Camille,

        Thanks for sending over the new Mira Vale record, it's been on repeat in the office.
        We'd love to have them at the Trades Club in Hebden Bridge this autumn. We have the
        17th and the 24th of October free at the moment. Capacity is 200, and for a first
        visit we usually offer a modest guarantee plus a share of ticket sales.

        Let me know if either date fits the routing.

        Cheers,
        Rob Ainsworth
        Programming, The Trades Club
        """),
    mail("x_siobhan", "en", "Wristbands and artist passes — Cork", """
        Hello Camille,

        Just a quick note ahead of the festival weekend. Artist wristbands and car passes for
        Foxglove can be collected from the production cabin behind the main stage from 11am on
        Saturday. Please send me the full names of everyone travelling by Wednesday so we can
        print the laminates in time.

        Looking forward to having the band with us in Cork.

        Best wishes,
        Siobhan McAllister
        Artist Liaison, Harbourside Festival
        """),
    mail("x_brudenell", "en", "Tech spec for the 12th", """
        Hi there,

        I'm the production manager at the Brudenell Social Club in Leeds and I'm putting
        together the technical plan for the 12th of November. Could you send me an up-to-date
        tech spec and stage plot for Atlas Motel? The one on file mentions two drummers, which
        I suspect is out of date.

        We provide the desk, monitors, mics and stands. Backline isn't included.

        Thanks,
        Dan Whitaker
        Production, Brudenell Social Club
        """),
    mail("x_setlist", "en", "PRS details for Saturday", """
        Hi Camille,

        After the show on Saturday, could the band fill in the setlist with songwriter names
        and approximate durations? We submit it to PRS for Music so that the writers get paid
        their performance royalties. A photo of the handwritten setlist taped to the stage is
        absolutely fine if that's easier.

        Thanks, and see you at the weekend,
        Megan Ross
        Sound and Fury, Sheffield
        """),
    mail("x_belfast", "en", "Travel plans for The Empire", """
        Hi Niamh,

        Quick update on travel: we're taking the morning ferry from Cairnryan on the 9th, which
        gets into Belfast around 1pm. Allowing for the drive through town, we should be at The
        Empire by 2.30 at the latest, so a 3pm load-in works well for us.

        Is there anywhere near the building where we can leave the trailer overnight?

        Thanks,
        Camille Roux
        Marée Haute Prod
        """),
    mail("x_ciaran", "en", "Payment details for Whelan's", """
        Hi Camille,

        All good for the 3rd of June at Whelan's. As we're paying a French company from
        Ireland, our accounts team needs your VAT number and IBAN on the invoice, and the
        amount stated in euros rather than sterling. Once that's in, payment goes out within
        fourteen days of the show.

        Give the band my best, really looking forward to this one.

        Ciaran Doherty
        Promoter, Dublin
        """),
    mail("x_transit", "en", "Van hire quote — May tour", """
        Hello,

        Thanks for your enquiry. We can offer a long-wheelbase Ford Transit, nine seats with a
        separate load area, from the 4th to the 18th of May. Van hire for the fourteen days
        comes to £1,260 including cover and unlimited mileage; a holding fee of £300 is taken
        on collection at our Dover depot.

        Please confirm by Friday if you'd like us to keep the vehicle for you.

        Kind regards,
        Gemma Price
        Roadside Vehicle Rental
        """),
    mail("x_norwich", "en", "Catering for the 30th", """
        Hi Camille,

        Our kitchen at Norwich Arts Centre is happy to do the band dinner on the 30th. The
        default menu is fully vegan this season (a lentil and squash curry with rice, then a
        chocolate cake), which I think suits your rider anyway. If anyone in the party would
        prefer something else, let me know by Monday and we'll sort it.

        All the best,
        Priya Shah
        Hospitality, Norwich Arts Centre
        """),
    mail("x_sponsorship", "en", "Touring the UK — paperwork", """
        Dear Camille,

        Before we can confirm the festival slot for Kalima, our legal team needs to know how
        the band will enter the UK. For paid performances we can issue a Certificate of
        Sponsorship for each musician under the creative worker route; we'll need passport
        details and dates of entry no later than eight weeks before the event.

        Please let me know if the band already holds any UK visas.

        Regards,
        Helen Murray
        Operations, Greenbank Festival
        """),
]


EN_INFLECTION_TARGETS = [
    mail("i_leeds", "en", "Bad news about the 22nd", """
        Hi Camille,

        I'm really sorry to write this. The Wardrobe in Leeds has lost its licence pending a
        council review, and as things stand we have to cancel the show on the 22nd of February.
        Ticket holders will be contacted directly by the box office. We'll cover the band's
        ferry costs if they can't be changed, just send the receipts over.

        Hopefully we can find another night in the spring.

        All the best,
        Jess Turner
        Promoter, Leeds
        """),
    mail("i_bristol", "en", "Change of start time at The Fleece", """
        Hi Camille,

        Heads up before we announce it: the council has asked us to bring the 14 March show at
        The Fleece in Bristol forward by two hours, so doors will now be at 5pm. The box office
        will be refunding anyone who bought a ticket and can't make the earlier time, no
        questions asked, until the 7th.

        The band's set time and fee are unchanged.

        Thanks,
        Owen Hughes
        Box Office, The Fleece
        """),
    mail("i_manchester", "en", "Re: overnight after Gorilla", """
        Hi Camille,

        No problem at all for the night of the 6th. We can accommodate all five of you at the
        Premier Inn on Portland Street in Manchester, about ten minutes' walk from Gorilla. The
        rooms are booked in our name with breakfast included, and check-in is open 24 hours,
        so there's no rush after the gig.

        There's secure space for the van underneath the hotel at a discounted rate.

        Cheers,
        Kate Doyle
        Gorilla
        """),
    mail("i_sheffield", "en", "Yellow Arch — change of date", """
        Hello Camille,

        Some bad luck on our side: the building next door is having its roof replaced and the
        scaffolding blocks our only load-in route until mid-April. We need to postpone the gig
        on the 28th of March at Yellow Arch in Sheffield. Would the 9th or the 16th of May work
        for Foxglove? Tickets already sold will stay valid for the new date.

        Apologies for the hassle,
        Liam Foster
        Yellow Arch
        """),
    mail("i_liverpool", "en", "Deposit for Future Yard", """
        Hi Camille,

        Just to let you know that payment of the 30% deposit for the 2nd of May at Future Yard,
        just across the water from Liverpool, went out this morning: £360 to the account on
        your contract. The balance will be settled on the night against your invoice, by bank
        transfer.

        It can take two or three working days to land, so give me a shout if it hasn't arrived
        by Friday.

        Best,
        Sam Roberts
        Future Yard
        """),
    mail("i_newcastle", "en", "Dinner at The Cluny", """
        Hi Daniel,

        For dinner at The Cluny in Newcastle on the 19th there will be seven of us. Could the
        kitchen make a vegetarian meal for three of the band? Our drummer also has a nut
        allergy, so please keep anything with nuts well away from his plate.

        Everything else on the rider stays as it was last time, and thanks again for the local
        ale, it went down a treat.

        Cheers,
        Camille Roux
        Marée Haute Prod
        """),
    mail("i_nottingham", "en", "Radio session request — Rescue Rooms", """
        Hi Camille,

        BBC Radio Nottingham would love to record the show on the 11th of April at Rescue Rooms
        for their Saturday night programme. It would be a straight multitrack from the desk, no
        cameras. The band would get the raw stems and final approval on the mix before
        anything goes out.

        Would Harbour Lights be up for it?

        Thanks,
        Ellie Green
        Marketing, Rescue Rooms
        """),
    mail("i_brighton", "en", "Merch at The Prince Albert", """
        Hi Camille,

        On the 21st you're welcome to sell merch on the landing at the top of the stairs at The
        Prince Albert in Brighton. We don't take a cut, but you'll need someone from your crew
        to run the table, as our bar staff can't handle cash for the band. There's a card
        reader you can borrow if you ask on the night.

        See you soon,
        Alfie Bennett
        The Prince Albert
        """),
    mail("i_cardiff", "en", "Guest list for the 7th", """
        Hi Camille,

        For the 7th at Clwb Ifor Bach in Cardiff, the band can invite eight guests in total.
        Please send full names by 5pm on the day; they'll be on the list at the door and will
        need photo ID. Press and industry don't count towards that number, just flag them to
        me separately.

        Diolch,
        Rhys Evans
        Clwb Ifor Bach
        """),
    mail("i_edinburgh", "en", "Press request — Sneaky Pete's", """
        Hi Camille,

        A journalist from The Skinny would like to interview Maya, the singer of Mira Vale,
        before the gig on the 2nd of October at Sneaky Pete's in Edinburgh. Twenty minutes in
        the green room around 6pm would be ideal, or a phone call the day before if that's
        easier for her.

        Let me know if it works.

        Best,
        Fraser Campbell
        Press, Sneaky Pete's
        """),
    mail("i_birmingham", "en", "Arriving on the 13th", """
        Hi,

        On the 13th you can park the van in the yard behind the Hare & Hounds in Birmingham
        from 2pm until the following morning. Please send me the registration so I can let the
        landlord know. Cars will need to go to the public car park on the high street, two
        minutes away.

        Cheers,
        Nathan Clarke
        Hare & Hounds
        """),
    mail("i_york", "en", "Running late on the 16th", """
        Hi Tom,

        Bad news: our train has been delayed by nearly two hours because of a signal failure
        north of Peterborough, so we won't get to The Crescent in York until about half five.
        Could we swap soundcheck slots with the support band? We'll still be ready to play at
        the advertised time.

        Sorry for the disruption, I'll keep you posted.

        Camille Roux
        Marée Haute Prod
        """),
    mail("i_oxford", "en", "Gear left between the two dates", """
        Hi Camille,

        The band will leave their amps and drums in our storeroom between the two Oxford dates
        next week. Our insurance only covers equipment owned by The Bullingdon, so could you
        send a list of the backline with serial numbers and rough values? We'll add it to the
        policy for those three days.

        Thanks,
        Chloe Walsh
        Production, The Bullingdon
        """),
]


EN_PARAPHRASE_TARGETS = [
    mail("p_fee", "en", "Re: the Bristol offer", """
        Hi Camille,

        I've talked it over with the band and, honestly, £800 doesn't cover the ferry, fuel and
        a night in a hotel for five people. Could you go back to the promoter and ask whether
        they'd raise the guarantee to £1,200? If that's not possible, a higher percentage of
        ticket sales after costs would also work for us.

        Thanks for pushing on this,
        Tom, for Atlas Motel
        """),
    mail("p_thanks", "en", "Thank you for Saturday!", """
        Hi Camille,

        What a night! The room was packed, people sang every chorus back at the stage and
        nobody wanted to go home when the lights came up. Our bar had its best takings of the
        year. Huge thanks to Harbour Lights for their energy and kindness, and to you for
        making everything so easy to organise.

        Love from everyone at The Joiners,
        Becky Lane
        Southampton
        """),
    mail("p_chasing", "en", "Following up — Foxglove in the spring", """
        Hi Megan,

        I hope you're well. I'm just following up on my message of the 3rd of February about
        Foxglove playing The Crescent this spring. I haven't heard back yet, and I know how
        busy things get, but we're routing the tour now and I'd love to hold a date for York
        if there's interest.

        Happy to jump on a call if that's easier.

        Best,
        Camille Roux
        Marée Haute Prod
        """),
    mail("p_invoice_wrong", "en", "Query about INV-2026-0477", """
        Hello,

        Thanks for sending this through. The invoice shows £950, but the contract we both
        signed for the 25th of April at The Musician sets the fee at £750, with no extras.
        Could you check and send a corrected version? Our finance team can't process it until
        the figures match.

        Kind regards,
        Anna Collins
        Finance, The Musician, Leicester
        """),
    mail("p_support", "en", "Support slot on the 15th?", """
        Hi Camille,

        We've got Cold Spring Choir at The Bodega in Nottingham on the 15th of May and we still
        need a local act to open the night, ideally something acoustic, around thirty minutes.
        Do you represent anyone in the East Midlands who might fit? We can offer £150 and a
        meal.

        Cheers,
        Joe Marsh
        The Bodega
        """),
    mail("p_breakin", "en", "Break-in last night", """
        Hi Sarah,

        Awful start to the day: someone smashed the back window of our van outside the hotel
        in Cardiff last night and took two guitars, a pedalboard and the merch float. The
        police have a report and we're going through the insurance now. We'll still make
        tonight's show at Thekla using instruments borrowed from the support band.

        Camille Roux
        Marée Haute Prod
        """),
    mail("p_louisiana", "en", "Some sad news", """
        Dear friends,

        After twenty-two years, The Louisiana will shut its doors for the last time on the 30th
        of June. The building has been sold and the new owners have other plans for it. Every
        show already booked until then will go ahead as planned, and we'd love to see you at
        the farewell party.

        Thank you for all the nights you gave us.

        Jo and the whole team
        The Louisiana, Bristol
        """),
    mail("p_barn", "en", "Getting to the barn", """
        Hi Camille,

        A few tips for the 20th: the barn is at the end of a farm track two miles past
        Hay-on-Wye, and there's no phone reception at all once you leave the main road, so
        download the map beforehand. We have a landline in the farmhouse if anyone needs to
        call home. Wifi works in the kitchen only.

        See you soon,
        Bryony Hale
        Hay Barn Sessions
        """),
    mail("p_newbooker", "en", "Introducing myself", """
        Hi Camille,

        I've just taken over from Sarah Hughes as the booker at The Cluny in Newcastle; she's
        moved on to a festival role after eight great years. I've been going through her inbox
        and saw your note about Mira Vale in the autumn. I'd be keen to pick that conversation
        up.

        Could you resend the details when you have a minute?

        Best,
        Daniel Okafor
        The Cluny
        """),
    mail("p_callitaday", "en", "Atlas Motel — the end of the road", """
        Hi all,

        It's with a heavy heart that we share this: after ten years and four albums, Atlas
        Motel have decided to call it a day. There's no drama, we've simply grown in different
        directions. The remaining autumn dates will still happen as a farewell run, and we'd
        love to see as many of you there as possible.

        Thank you for everything,
        Camille, on behalf of the band
        """),
    mail("p_rain", "en", "Rain plan for Sunday", """
        Hi Camille,

        The forecast for Sunday is grim, with heavy rain and gusts up to fifty miles an hour,
        so we're not going to risk the park stage. Harbour Lights will play the same slot in
        the big hall of the town museum instead, with the same sound crew. Doors and set times
        are unchanged, and capacity is still 400.

        Cheers,
        Matt Byrne
        Riverside Summer Series, Cardiff
        """),
    mail("p_matinee", "en", "Family matinee on the 8th", """
        Hi Camille,

        A quick request for Foxglove's date on the 8th: we'd like to turn it into a family
        matinee starting at 2pm, with under-twelves free and a shorter set of around
        forty-five minutes. Could the band keep the volume gentle and skip any explicit
        lyrics? We'll provide ear defenders for the kids.

        The later slot would then be free if they fancy a second set.

        Thanks,
        Lucy Ward
        The Crescent, York
        """),
    mail("p_double", "en", "Double booking on the 17th — sorry!", """
        Hi Camille,

        I'm mortified: while sorting out the calendar I realised we've got two bands down for
        the 17th of October at The Jacaranda in Liverpool, yours and a touring act confirmed
        by my colleague the same week. The other band were booked first. Could Mira Vale take
        the 18th or the 24th instead? If neither works, we'll pay a kill fee.

        Apologies again,
        Chris Lowe
        The Jacaranda
        """),
]


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------

QUERIES = [
    Query("fr", "exact", "Quimperlé", ("x_quimperle",)),
    Query("fr", "exact", "facture FAC-2026-0417", ("x_fac0417",)),
    Query("fr", "exact", "concert au Jardin Moderne", ("x_jardin",)),
    Query("fr", "exact", "Gwenaëlle Le Floch", ("x_gwenaelle",)),
    Query("fr", "exact", "fiche technique Stereolux", ("x_stereolux",)),
    Query("fr", "exact", "Morlaix", ("x_morlaix",)),
    Query("fr", "exact", "Yann Kerhervé", ("x_kerherve",)),
    Query("fr", "exact", "La Laiterie Strasbourg", ("x_laiterie",)),
    Query("fr", "exact", "contrat de cession Bikini", ("x_bikini",)),
    Query("fr", "exact", "déclaration SACEM", ("x_sacem",)),
    Query("fr", "exact", "Guso", ("x_guso",)),
    Query("fr", "exact", "La Rodia Besançon", ("x_rodia",)),
    Query("fr", "exact", "Hôtel de la Gare Laval", ("x_laval",)),
    Query("fr", "exact", "Coopérative de Mai Clermont-Ferrand", ("x_coop",)),
    Query("fr", "exact", "Maëlle Guillou", ("x_maelle",)),
    Query("fr", "exact", "Saint-Brieuc", ("x_saintbrieuc",)),
    Query("fr", "exact", "Carhaix", ("x_carhaix",)),
    Query("fr", "exact", "camion Iveco", ("x_iveco",)),
    Query("fr", "exact", "FAC-2025-1187", ("x_fac1187",)),
    Query("fr", "exact", "La Nef Angoulême", ("x_nef",)),
    Query("fr", "inflection", "annulation concert Brest", ("i_brest",)),
    Query("fr", "inflection", "remboursements billets Nantes", ("i_nantes",)),
    Query("fr", "inflection", "hébergement du groupe à Lorient", ("i_lorient",)),
    Query("fr", "inflection", "report du concert Angers", ("i_angers",)),
    Query("fr", "inflection", "versement de l'acompte Rouen", ("i_rouen",)),
    Query("fr", "inflection", "repas végétariens Caen", ("i_caen",)),
    Query("fr", "inflection", "enregistrement live Tours", ("i_tours",)),
    Query("fr", "inflection", "vente de disques Dijon", ("i_dijon",)),
    Query("fr", "inflection", "invitations Grenoble", ("i_grenoble",)),
    Query("fr", "inflection", "envoi de l'affiche Toulouse", ("i_toulouse",)),
    Query("fr", "inflection", "interview du chanteur Lyon", ("i_lyon",)),
    Query("fr", "inflection", "photographies du concert Bordeaux", ("i_bordeaux",)),
    Query("fr", "inflection", "stationnement du camion Montpellier", ("i_montpellier",)),
    Query("fr", "inflection", "retard du train Marseille", ("i_marseille",)),
    Query("fr", "inflection", "limitation du volume Metz", ("i_metz",)),
    Query("fr", "inflection", "assurance du matériel Nancy", ("i_nancy",)),
    Query("fr", "inflection", "répétition Poitiers", ("i_poitiers",)),
    Query("fr", "inflection", "ventes de billets Limoges", ("i_limoges",)),
    Query("fr", "inflection", "prolongation du set Le Mans", ("i_lemans",)),
    Query("fr", "inflection", "prêt d'une batterie Vannes", ("i_vannes",)),
    Query("fr", "paraphrase", "le chanteur est malade", ("p_reims",)),
    Query("fr", "paraphrase", "la salle a été inondée", ("p_rennes_ubu",)),
    Query("fr", "paraphrase", "les artistes ne pourront pas se laver sur place",
          ("p_marseille_loges",)),
    Query("fr", "paraphrase", "un musicien a oublié son instrument après le concert",
          ("p_basse",)),
    Query("fr", "paraphrase", "le lieu n'est pas assez grand pour le groupe", ("p_vitre",)),
    Query("fr", "paraphrase", "il ne reste plus aucun billet", ("p_orleans",)),
    Query("fr", "paraphrase", "il vient d'avoir un bébé", ("p_paternite",)),
    Query("fr", "paraphrase", "un nouveau musicien rejoint le groupe", ("p_batteur",)),
    Query("fr", "paraphrase", "les tickets coûtent trop cher pour les spectateurs", ("p_tarif",)),
    Query("fr", "paraphrase", "pas de piano sur place", ("p_clavier",)),
    Query("fr", "paraphrase", "concert sans cachet, rémunération au bon vouloir du public",
          ("p_chapeau",)),
    Query("fr", "paraphrase", "ils veulent faire revenir le groupe l'an prochain", ("p_saison",)),
    Query("fr", "paraphrase", "animal de compagnie en tournée", ("p_chienne",)),
    Query("fr", "paraphrase", "panne du véhicule sur l'autoroute", ("p_niort",)),
    Query("fr", "paraphrase", "papiers administratifs pour le chômage des artistes", ("p_aem",)),
    Query("fr", "paraphrase", "concurrence d'un autre événement le même soir",
          ("p_lyon_festival",)),
    Query("fr", "paraphrase", "garder la date secrète jusqu'à l'annonce officielle",
          ("p_embargo",)),
    Query("fr", "paraphrase", "payer en plusieurs fois", ("p_echeancier",)),
    Query("fr", "paraphrase", "spectateurs assis uniquement", ("p_gradins",)),
    Query("fr", "paraphrase", "le groupe se plaint d'avoir été mal reçu", ("p_accueil",)),
    Query("en", "exact", "invoice INV-2026-0318", ("x_inv0318",)),
    Query("en", "exact", "Hebden Bridge", ("x_hebden",)),
    Query("en", "exact", "Siobhan McAllister", ("x_siobhan",)),
    Query("en", "exact", "tech spec Brudenell", ("x_brudenell",)),
    Query("en", "exact", "King Tut's Glasgow", ("x_kingtuts",)),
    Query("en", "exact", "setlist for PRS", ("x_setlist",)),
    Query("en", "exact", "Aberdeen", ("x_aberdeen",)),
    Query("en", "exact", "ferry to Belfast", ("x_belfast",)),
    Query("en", "exact", "Ciaran Doherty", ("x_ciaran",)),
    Query("en", "exact", "INV-2026-0291", ("x_inv0291",)),
    Query("en", "exact", "Band on the Wall", ("x_wall",)),
    Query("en", "exact", "Transit van hire", ("x_transit",)),
    Query("en", "exact", "vegan catering Norwich", ("x_norwich",)),
    Query("en", "exact", "Certificate of Sponsorship", ("x_sponsorship",)),
    Query("en", "inflection", "cancelled shows Leeds", ("i_leeds",)),
    Query("en", "inflection", "ticket refunds Bristol", ("i_bristol",)),
    Query("en", "inflection", "accommodation for the band in Manchester", ("i_manchester",)),
    Query("en", "inflection", "postponed gig Sheffield", ("i_sheffield",)),
    Query("en", "inflection", "deposit payments Liverpool", ("i_liverpool",)),
    Query("en", "inflection", "vegetarian meals Newcastle", ("i_newcastle",)),
    Query("en", "inflection", "recorded show Nottingham", ("i_nottingham",)),
    Query("en", "inflection", "selling merch Brighton", ("i_brighton",)),
    Query("en", "inflection", "invited guests Cardiff", ("i_cardiff",)),
    Query("en", "inflection", "interviewing the singer Edinburgh", ("i_edinburgh",)),
    Query("en", "inflection", "van parking Birmingham", ("i_birmingham",)),
    Query("en", "inflection", "train delays York", ("i_york",)),
    Query("en", "inflection", "insured backline Oxford", ("i_oxford",)),
    Query("en", "paraphrase", "they want more money for the gig", ("p_fee",)),
    Query("en", "paraphrase", "feedback after a successful concert", ("p_thanks",)),
    Query("en", "paraphrase", "nobody is answering my emails", ("p_chasing",)),
    Query("en", "paraphrase", "they billed us too much", ("p_invoice_wrong",)),
    Query("en", "paraphrase", "looking for someone to play before the headliner", ("p_support",)),
    Query("en", "paraphrase", "gear stolen from the vehicle", ("p_breakin",)),
    Query("en", "paraphrase", "the venue is closing forever", ("p_louisiana",)),
    Query("en", "paraphrase", "no mobile signal at the venue", ("p_barn",)),
    Query("en", "paraphrase", "new person in charge of programming", ("p_newbooker",)),
    Query("en", "paraphrase", "the group has split up", ("p_callitaday",)),
    Query("en", "paraphrase", "bad weather means the open-air show moves inside", ("p_rain",)),
    Query("en", "paraphrase", "early gig aimed at children and parents", ("p_matinee",)),
    Query("en", "paraphrase", "they accidentally scheduled two acts for one evening",
          ("p_double",)),
]


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def filler(rng: random.Random, lang: str, invoices: InvoiceBook, seen: set[str]) -> list[Email]:
    """The template-made distractors of one language, no two alike."""
    plan = FR_FILLER if lang == "fr" else EN_FILLER
    made: list[Email] = []
    for family_name, count in plan.items():
        family = FAMILIES[lang][family_name]
        done = 0
        while done < count:
            gig = make_gig(rng, lang, invoices)
            subject, text = family(rng, gig)
            if text in seen:
                continue
            seen.add(text)
            done += 1
            made.append(Email(f"{lang}_{family_name}_{done:03d}", lang, subject, text))
    return made


def build(rng: random.Random) -> tuple[list[dict], list[dict]]:
    """All emails with their ids, and the queries pointing at them."""
    fr_invoices = InvoiceBook(rng, "FAC", RESERVED_INVOICES["fr"])
    en_invoices = InvoiceBook(rng, "INV", RESERVED_INVOICES["en"])
    targets = [
        *fr_pinned(rng, fr_invoices),
        *FR_EXACT_TARGETS,
        *FR_INFLECTION_TARGETS,
        *FR_PARAPHRASE_TARGETS,
        *en_pinned(rng, en_invoices),
        *EN_EXACT_TARGETS,
        *EN_INFLECTION_TARGETS,
        *EN_PARAPHRASE_TARGETS,
    ]
    seen = {email.text for email in targets}
    emails = [
        *targets,
        *filler(rng, "fr", fr_invoices, seen),
        *filler(rng, "en", en_invoices, seen),
    ]
    rng.shuffle(emails)
    ids = {email.key: f"e{n:04d}" for n, email in enumerate(emails, start=1)}
    email_rows = [
        {"id": ids[e.key], "lang": e.lang, "subject": e.subject, "text": e.text} for e in emails
    ]
    query_rows = [
        {
            "id": f"q{n:03d}",
            "lang": q.lang,
            "kind": q.kind,
            "query": q.query,
            "relevant": [ids[key] for key in q.targets],
        }
        for n, q in enumerate(QUERIES, start=1)
    ]
    return email_rows, query_rows


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def shares_stem(term: str, words: set[str]) -> bool:
    """Whether some word is another form of ``term``: a different word with a common stem."""
    for word in words:
        if word == term:
            continue
        shortest = min(len(word), len(term))
        needed = max(3, min(4, shortest - 2))
        common = 0
        for a, b in zip(word, term, strict=False):
            if a != b:
                break
            common += 1
        if common >= needed:
            return True
    return False


def check_emails(emails: list[dict]) -> list[str]:
    """Problems with the emails: lengths, duplicates, counts, language split."""
    problems = []
    ids = [e["id"] for e in emails]
    if len(set(ids)) != len(ids):
        problems.append("duplicate email ids")
    texts = [e["text"] for e in emails]
    if len(set(texts)) != len(texts):
        problems.append("duplicate email texts")
    for email in emails:
        count = word_count(email["text"])
        if not MIN_WORDS <= count <= MAX_WORDS:
            problems.append(f"{email['id']} has {count} words: {email['subject']!r}")
        if email["lang"] not in ("fr", "en"):
            problems.append(f"{email['id']} has language {email['lang']!r}")
    if len(emails) < MIN_EMAILS:
        problems.append(f"only {len(emails)} emails")
    french = sum(e["lang"] == "fr" for e in emails) / len(emails)
    if not FRENCH_SHARE[0] <= french <= FRENCH_SHARE[1]:
        problems.append(f"French share {french:.2f}")
    return problems


def check_queries(queries: list[dict], emails: list[dict]) -> list[str]:
    """Problems with the queries: counts, targets, and what each kind promises."""
    problems = []
    by_id = {e["id"]: e for e in emails}
    words = {e["id"]: tokens(f"{e['subject']}\n{e['text']}") for e in emails}
    kinds = Counter((q["lang"], q["kind"]) for q in queries)
    if dict(kinds) != PLANNED_KINDS:
        problems.append(f"query counts {dict(kinds)} differ from {PLANNED_KINDS}")
    if len({q["query"] for q in queries}) != len(queries):
        problems.append("duplicate query texts")
    for query in queries:
        label = f"{query['id']} ({query['kind']}) {query['query']!r}"
        relevant = query["relevant"]
        if not relevant:
            problems.append(f"{label}: nothing relevant")
            continue
        if any(by_id[r]["lang"] != query["lang"] for r in relevant):
            problems.append(f"{label}: a relevant email is in another language")
        terms = distinctive_terms(query["query"])
        if not terms:
            problems.append(f"{label}: no distinctive term")
            continue
        if query["kind"] == "exact":
            problems += check_exact(label, terms, relevant, words)
        elif query["kind"] == "inflection":
            problems += check_inflection(label, terms, relevant, words)
        else:
            problems += check_paraphrase(label, terms, relevant, words)
    return problems


def check_exact(
    label: str, terms: list[str], relevant: list[str], words: dict[str, set[str]]
) -> list[str]:
    """Every relevant email holds all the terms, and no other email does."""
    problems = []
    for email_id in relevant:
        missing = [t for t in terms if t not in words[email_id]]
        if missing:
            problems.append(f"{label}: {email_id} lacks {missing}")
    holders = sorted(i for i, w in words.items() if all(t in w for t in terms))
    others = [i for i in holders if i not in relevant]
    if others:
        problems.append(f"{label}: also matched by {others}")
    return problems


def check_inflection(
    label: str, terms: list[str], relevant: list[str], words: dict[str, set[str]]
) -> list[str]:
    """Every relevant email holds some query term only in another form."""
    problems = []
    for email_id in relevant:
        held = words[email_id]
        inflected = [t for t in terms if t not in held and shares_stem(t, held)]
        if not inflected:
            problems.append(f"{label}: {email_id} holds no term in another form")
    return problems


def check_paraphrase(
    label: str, terms: list[str], relevant: list[str], words: dict[str, set[str]]
) -> list[str]:
    """No relevant email holds any of the query's terms."""
    problems = []
    for email_id in relevant:
        shared = [t for t in terms if t in words[email_id]]
        if shared:
            problems.append(f"{label}: {email_id} shares {shared}")
    return problems


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object a line, UTF-8, accents as they are."""
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def summary(emails: list[dict], queries: list[dict]) -> str:
    """Counts of emails per language and of queries per language and kind."""
    langs = Counter(e["lang"] for e in emails)
    lines = [
        f"emails: {len(emails)} (fr {langs['fr']}, en {langs['en']}, "
        f"fr share {langs['fr'] / len(emails):.1%})",
        f"queries: {len(queries)}",
    ]
    kinds = Counter((q["lang"], q["kind"]) for q in queries)
    for lang in ("fr", "en"):
        parts = ", ".join(f"{k} {kinds[(lang, k)]}" for k in ("exact", "inflection", "paraphrase"))
        lines.append(f"  {lang}: {parts}")
    return "\n".join(lines)


def main() -> int:
    """Build, check, and write the corpus; a failed check writes nothing."""
    rng = random.Random(SEED)
    emails, queries = build(rng)
    problems = check_emails(emails) + check_queries(queries, emails)
    if problems:
        print("corpus check failed:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    write_jsonl(EMAILS_PATH, emails)
    write_jsonl(QUERIES_PATH, queries)
    print(summary(emails, queries))
    print("checks passed: lengths, counts, exact uniqueness, inflection forms, paraphrase wording")
    return 0


if __name__ == "__main__":
    sys.exit(main())
