"""The catalogue of risk signs this system ships (../shared/domain.md, "Risk factors").

The four groups are PuMPuRS' official ones (Latvian names as the programme used them);
the English sign labels are domain.md's; the Latvian sign labels are this project's
translation of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RiskGroup:
    group: str
    label_lv: str
    label_en: str


@dataclass(frozen=True)
class RiskFactor:
    code: str
    group: RiskGroup
    label_lv: str
    label_en: str


LEARNING = RiskGroup("learning", "mācību darba un izglītības iestādes riski", "learning and school")
ECONOMIC = RiskGroup("economic", "ekonomiskie riski", "economic")
FAMILY = RiskGroup("family", "ar ģimeni saistītie riski", "family")
SOCIAL_HEALTH = RiskGroup(
    "social_health", "sociālās vides un veselības riski", "social environment and health"
)

RISK_FACTORS: tuple[RiskFactor, ...] = (
    RiskFactor(
        "learning.difficulties",
        LEARNING,
        "grūtības apgūt mācību saturu",
        "difficulty learning the content",
    ),
    RiskFactor(
        "learning.gaps",
        LEARNING,
        "iepriekšējā posmā neapgūts mācību saturs",
        "content missed at an earlier stage",
    ),
    RiskFactor(
        "learning.low_achievement",
        LEARNING,
        "zemi mācību sasniegumi: nepietiekams vērtējums (1-3 balles 10 ballu skalā) "
        'vai vērtējuma nav ("nv")',
        'low achievement: an insufficient mark (1-3 on the 10-point scale) or no mark ("nv")',
    ),
    RiskFactor(
        "learning.absences",
        LEARNING,
        "neattaisnoti kavējumi: vairāk nekā 20 neattaisnoti kavētu mācību stundu semestrī "
        "(slieksnis, pie kura skolai jāinformē pašvaldība)",
        "unexcused absences: more than 20 unexcused lessons in a semester "
        "(the threshold at which a school must inform the municipality)",
    ),
    RiskFactor("learning.behaviour", LEARNING, "uzvedības problēmas", "behaviour problems"),
    RiskFactor("learning.language_barrier", LEARNING, "valodas barjera", "language barrier"),
    RiskFactor("learning.low_motivation", LEARNING, "zema mācību motivācija", "low motivation"),
    RiskFactor(
        "learning.conflicts",
        LEARNING,
        "konflikti vai ņirgāšanās skolā",
        "conflicts or bullying at school",
    ),
    RiskFactor(
        "learning.repeated_year",
        LEARNING,
        "mācību gada atkārtošana vai pagarināts mācību gads",
        "repeating a year or an extended school year",
    ),
    RiskFactor(
        "economic.low_income",
        ECONOMIC,
        "trūcīga vai maznodrošināta ģimene",
        "needy or low-income family",
    ),
    RiskFactor(
        "economic.lacks_essentials",
        ECONOMIC,
        "nav līdzekļu mācību piederumiem, apģērbam, higiēnas precēm",
        "cannot afford learning materials, clothing, hygiene items",
    ),
    RiskFactor(
        "economic.transport_costs",
        ECONOMIC,
        "ceļa uz skolu izmaksas vai attālums",
        "cost or distance of travel to school",
    ),
    RiskFactor(
        "economic.paid_work",
        ECONOMIC,
        "strādā vai vēlas pamest mācības algota darba dēļ",
        "works or wants to leave for paid work",
    ),
    RiskFactor(
        "family.lack_of_care",
        FAMILY,
        "vecāku gādības vai uzraudzības trūkums (piemēram, vecāki strādā ārzemēs)",
        "lack of parental care or supervision (e.g. parents working abroad)",
    ),
    RiskFactor(
        "family.crisis",
        FAMILY,
        "krīze ģimenē: šķiršanās, nāve, vardarbība",
        "family crisis: divorce, death, violence",
    ),
    RiskFactor(
        "family.caring_duties",
        FAMILY,
        "rūpējas par brāļiem, māsām vai citiem ģimenes locekļiem",
        "cares for siblings or other family members",
    ),
    RiskFactor(
        "family.early_parenthood",
        FAMILY,
        "grūtniecība, agrīna kļūšana par vecākiem vai laulība",
        "pregnancy, early parenthood or marriage",
    ),
    RiskFactor("social_health.health", SOCIAL_HEALTH, "veselības problēmas", "health problems"),
    RiskFactor(
        "social_health.addiction",
        SOCIAL_HEALTH,
        "atkarību izraisošas vielas vai procesi",
        "addictive substances or behaviour",
    ),
    RiskFactor(
        "social_health.environment",
        SOCIAL_HEALTH,
        "negatīva sociālā vide, likumpārkāpumi",
        "negative social environment, offending",
    ),
    RiskFactor(
        "social_health.special_needs",
        SOCIAL_HEALTH,
        "speciālās vajadzības vai invaliditāte",
        "special needs or disability",
    ),
)

RISK_CODES = frozenset(factor.code for factor in RISK_FACTORS)

# The signs a journal import derives from marks and absences.
ABSENCES = "learning.absences"
LOW_ACHIEVEMENT = "learning.low_achievement"
