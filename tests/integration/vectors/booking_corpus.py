"""A labelled corpus of booking emails (venue availability, fees, refusals, technical riders,
logistics), in French and English, written for the relevance test; and queries, each with the
key of the one email it must find first. Queries paraphrase their email instead of quoting it."""

from __future__ import annotations

# key -> (subject, text)
EMAILS: dict[str, tuple[str, str]] = {
    "avail_en": (
        "Availability of the main hall in October",
        "Hello, the main hall is still free on Friday 14 and Saturday 15 October. Let me know "
        "quickly which date suits your tour, as another promoter has an option on the 15th.",
    ),
    "avail_fr": (
        "Disponibilités de la salle en novembre",
        "Bonjour, la grande salle est libre le jeudi 3 et le vendredi 4 novembre. Dites-nous "
        "rapidement quelle date vous convient pour la tournée.",
    ),
    "fee_en": (
        "Fee offer for your headline show",
        "We can offer a guaranteed fee of 3,500 euros plus 70% of the door after costs, with "
        "hotel and catering for six people included.",
    ),
    "fee_fr": (
        "Proposition de cachet",
        "Nous pouvons vous proposer un cachet de 1 800 euros TTC, repas et hébergement compris "
        "pour quatre personnes. Le contrat de cession suivra.",
    ),
    "refusal_en": (
        "Re: booking request",
        "Thank you for thinking of us, but our programme for next season is already complete "
        "and we will not be able to book the band this time.",
    ),
    "refusal_fr": (
        "Re: demande de programmation",
        "Merci pour votre proposition. Malheureusement notre programmation est complète et nous "
        "ne pourrons pas accueillir le groupe cette saison.",
    ),
    "rider_en": (
        "Technical rider and stage plot",
        "Attached is our technical rider: 24-channel desk, six monitor wedges, drum riser, "
        "and the stage plot with the backline layout.",
    ),
    "rider_fr": (
        "Fiche technique du spectacle",
        "Vous trouverez ci-joint la fiche technique : console 32 voies, plan de feu, besoins en "
        "retours et plan de scène.",
    ),
    "hospitality_en": (
        "Hospitality rider",
        "For the dressing room we need hot meals for eight, vegetarian options, still water, "
        "towels and a secure room for instruments.",
    ),
    "contract_en": (
        "Performance contract to sign",
        "Please find the performance contract attached. Sign both copies and send one back "
        "before the end of the month so we can announce the show.",
    ),
    "contract_fr": (
        "Contrat de cession à signer",
        "Voici le contrat de cession en deux exemplaires. Merci de les signer et de nous en "
        "retourner un avant la fin du mois.",
    ),
    "invoice_en": (
        "Invoice for the 12 May concert",
        "Please find our invoice for the concert of 12 May. Payment is due by bank transfer "
        "within 30 days; our IBAN is on the invoice.",
    ),
    "invoice_fr": (
        "Facture du concert",
        "Ci-joint la facture pour le concert du 20 mars. Le règlement se fait par virement sous "
        "trente jours.",
    ),
    "cancel_en": (
        "Show cancelled due to illness",
        "I am sorry to tell you that the singer is ill and the show on Saturday has to be "
        "cancelled. We would like to find a new date.",
    ),
    "cancel_fr": (
        "Annulation du concert",
        "Nous devons malheureusement annuler le concert de samedi : le chanteur est malade. "
        "Pouvons-nous trouver une date de report ?",
    ),
    "travel_en": (
        "Travel and accommodation",
        "The band arrives by train at 2pm. We booked four double rooms at the hotel next to "
        "the venue for two nights.",
    ),
    "parking_fr": (
        "Accès et stationnement du camion",
        "Le camion pourra se garer devant l'entrée des artistes. Le déchargement se fait par "
        "le quai à partir de 14 heures.",
    ),
    "soundcheck_en": (
        "Schedule for the day",
        "Load-in at 2pm, soundcheck at 4pm, doors at 7:30pm, support act at 8pm and your set "
        "from 9pm to 10:30pm. Curfew is at 11pm.",
    ),
    "merch_en": (
        "Merchandise table",
        "You can sell T-shirts and records in the foyer. The venue takes no commission on "
        "merchandise, and we provide a table and a light.",
    ),
    "tickets_fr": (
        "Billetterie et prix des places",
        "La billetterie ouvre lundi. Les places sont à 18 euros en prévente et 22 euros sur "
        "place ; nous vous enverrons les chiffres de vente chaque semaine.",
    ),
    "press_en": (
        "Press kit and photos",
        "Could you send us high-resolution photos, a short biography and links to videos for "
        "the press release and the season brochure?",
    ),
    "festival_fr": (
        "Invitation au festival d'été",
        "Nous aimerions inviter le groupe à jouer au festival en plein air le 8 juillet, sur la "
        "scène principale en fin d'après-midi.",
    ),
    "capacity_en": (
        "Venue capacity and layout",
        "The venue holds 450 people standing or 220 seated. The stage is 8 metres wide and 6 "
        "metres deep with a 4 metre ceiling.",
    ),
    "guestlist_en": (
        "Guest list",
        "Each member of the band can put two names on the guest list. Send the names by "
        "Thursday; they collect their wristbands at the box office.",
    ),
}

# (query, key of the email it must rank first)
QUERIES: list[tuple[str, str]] = [
    ("which dates is the venue free in October", "avail_en"),
    ("la salle est-elle disponible début novembre", "avail_fr"),
    ("how much money do they pay us for the gig", "fee_en"),
    ("montant du cachet proposé pour le concert", "fee_fr"),
    ("they turned down our booking, season is full", "refusal_en"),
    ("refus : programmation complète cette saison", "refusal_fr"),
    ("sound desk channels and monitors needed on stage", "rider_en"),
    ("fiche technique avec console et plan de scène", "rider_fr"),
    ("food and drinks for the artists backstage", "hospitality_en"),
    ("signed agreement for the performance", "contract_en"),
    ("signer les exemplaires du contrat de cession", "contract_fr"),
    ("when do we get paid, bank transfer details", "invoice_en"),
    ("facture et paiement par virement", "invoice_fr"),
    ("gig called off because the vocalist is sick", "cancel_en"),
    ("concert annulé, chanteur malade, report", "cancel_fr"),
    ("hotel rooms and train arrival for the musicians", "travel_en"),
    ("où garer le camion pour décharger le matériel", "parking_fr"),
    ("what time is the soundcheck and when do we play", "soundcheck_en"),
    ("can we sell t-shirts and vinyl at the show", "merch_en"),
    ("prix des billets en prévente", "tickets_fr"),
    ("photos and bio for the press release", "press_en"),
    ("invitation à jouer dans un festival en juillet", "festival_fr"),
    ("how many people fit in the room, stage size", "capacity_en"),
    ("free tickets for friends of the band", "guestlist_en"),
]
