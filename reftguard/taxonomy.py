"""The harm categories a decision names: a small fixed taxonomy, and the map from the packaged data's own
category strings onto it.

The data's sources label harm in four vocabularies (e.g. "malicious_uses:S006instructions", "Physical",
"weapons_explosives", "hypothetical_world:cbrn"). Rules below map each onto one class by keywords, first
match wins; a label no rule matches is `other`, and a row without a category is not used.
"""
from __future__ import annotations

COVERS = {  # class: what it covers (docs/curation.md renders this)
    "violent_crime": "violence, physical harm, threats, kidnapping",
    "weapons": "firearms, explosives; chemical, biological, radiological, nuclear",
    "cyber": "malware, hacking, intrusion, malicious code",
    "fraud": "scams, phishing, financial crime, spam, forgery",
    "drugs": "synthesis, trafficking, illegal use",
    "hate_harassment": "hate speech, discrimination, bullying, harassment",
    "sexual": "sexual content",
    "self_harm": "suicide, self-injury, eating disorders",
    "privacy": "personal data, doxxing, stalking, surveillance",
    "extremism": "terrorism, violent extremism, radicalisation",
    "other": "the rest: disinformation, theft, evasion, rights violations, ...",
}
CATEGORIES = tuple(COVERS)

# (keywords, class): the first rule with a keyword in the lower-cased label wins, so specific words go first.
RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("non-violent", "nonviolent"), "other"),
    (("self_harm", "self-harm", "suicide", "eating_disorder"), "self_harm"),
    (("extremis", "terror", "radical"), "extremism"),
    (("cbrn", "weapon", "explosive", "firearm", "bomb"), "weapons"),
    (("malware", "cyber", "hack", "s008code", "exploit_code"), "cyber"),
    (("drug",), "drugs"),
    (("fraud", "scam", "financial", "spam", "phish", "counterfeit", "forg"), "fraud"),
    (("doxx", "stalk", "privacy", "private", "personal", "surveil"), "privacy"),
    (("sexual", "lewd", "porn"), "sexual"),
    (("hate", "harass", "bully", "discriminat", "toxic", "s007", "profanity"), "hate_harassment"),
    (("violen", "physical", "threat", "kidnap", "murder", "assault"), "violent_crime"),
)


def category_of(label: str | None) -> str | None:
    """The class of a data category string (None for a row without one)."""
    if not label:
        return None
    low = label.lower()
    for words, cls in RULES:
        if any(w in low for w in words):
            return cls
    return "other"
