"""Made-up pupils that look real: Latvian names (with the gendered family-name forms and the
Latgalian and Russian-speaking mix of Daugavpils) and valid personal codes in both formats.

Everything is drawn from the caller's random generator, so a seed gives the same people.
"""

from __future__ import annotations

import random
from datetime import date

from services.identification.personal_code import check_digit

GIVEN_NAMES = {
    "F": (
        "Anna", "Elza", "Marta", "Sofija", "Alise", "Emīlija", "Laura", "Paula", "Estere",
        "Līva", "Madara", "Katrīna", "Viktorija", "Darja", "Anastasija", "Jeļena", "Kristīne",
        "Ieva", "Evelīna", "Agate", "Dārta", "Annija", "Renāte", "Diāna", "Rēzija", "Elīza",
        "Polina", "Ksenija", "Alīna", "Undīne",
    ),
    "M": (
        "Jānis", "Roberts", "Mārtiņš", "Kārlis", "Dāvis", "Markuss", "Gustavs", "Ričards",
        "Artūrs", "Emīls", "Raivis", "Edgars", "Daniels", "Aleksandrs", "Maksims", "Nikita",
        "Artjoms", "Kirils", "Vladislavs", "Dmitrijs", "Rihards", "Ralfs", "Krišjānis",
        "Oskars", "Olivers", "Tomass", "Valters", "Andrejs", "Sergejs", "Ēriks",
    ),
}  # fmt: skip

# (masculine, feminine) forms of the same family name.
FAMILY_NAMES = (
    ("Bērziņš", "Bērziņa"), ("Kalniņš", "Kalniņa"), ("Ozoliņš", "Ozoliņa"),
    ("Jansons", "Jansone"), ("Ozols", "Ozola"), ("Liepiņš", "Liepiņa"),
    ("Krūmiņš", "Krūmiņa"), ("Balodis", "Balode"), ("Eglītis", "Eglīte"),
    ("Zariņš", "Zariņa"), ("Pētersons", "Pētersone"), ("Vītols", "Vītola"),
    ("Kļaviņš", "Kļaviņa"), ("Kārkliņš", "Kārkliņa"), ("Vanags", "Vanaga"),
    ("Cīrulis", "Cīrule"), ("Siliņš", "Siliņa"), ("Lācis", "Lāce"),
    ("Strazdiņš", "Strazdiņa"), ("Sproģis", "Sproģe"), ("Rudzītis", "Rudzīte"),
    ("Ivanovs", "Ivanova"), ("Petrovs", "Petrova"), ("Kuzņecovs", "Kuzņecova"),
    ("Smirnovs", "Smirnova"), ("Vasiļjevs", "Vasiļjeva"), ("Sokolovs", "Sokolova"),
    ("Popovs", "Popova"), ("Jakovļevs", "Jakovļeva"), ("Kovaļovs", "Kovaļova"),
    ("Grigorjevs", "Grigorjeva"), ("Daņilovs", "Daņilova"), ("Ļebedevs", "Ļebedeva"),
    ("Mihailovs", "Mihailova"), ("Zeļenkovs", "Zeļenkova"), ("Pauliņš", "Pauliņa"),
    ("Zaķis", "Zaķe"), ("Puķīte", "Puķīte"), ("Gaļimovs", "Gaļimova"), ("Šmits", "Šmite"),
)  # fmt: skip

_CENTURY_DIGIT = {1800: "0", 1900: "1", 2000: "2"}


def full_name(rng: random.Random, gender: str) -> tuple[str, str]:
    """A given name and the family name in the form that agrees with the gender."""
    given = rng.choice(GIVEN_NAMES[gender])
    masculine, feminine = rng.choice(FAMILY_NAMES)
    return given, feminine if gender == "F" else masculine


def old_format_code(rng: random.Random, birth_date: date) -> str:
    """``DDMMYY-CNNNK``: the birth date, the century digit, a serial and the check digit."""
    century = _CENTURY_DIGIT[birth_date.year // 100 * 100]
    while True:
        first_ten = (
            f"{birth_date:%d%m}{birth_date.year % 100:02d}{century}{rng.randrange(1000):03d}"
        )
        digit = check_digit(first_ten)
        if digit is not None:
            return f"{first_ten[:6]}-{first_ten[6:]}{digit}"


def new_format_code(rng: random.Random) -> str:
    """``32NNNN-NNNNN``: the code issued since 1 July 2017, with no date in it."""
    return f"32{rng.randrange(10_000):04d}-{rng.randrange(100_000):05d}"
