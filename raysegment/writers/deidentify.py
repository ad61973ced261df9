"""De-identification of the DICOM datasets raysegment writes: the Basic Application Level Confidentiality Profile.

The attributes and what to do with each (remove, empty, replace by a dummy) are the profile's own
table, PS3.15 Annex E Table E.1-1, as dicom-anonymizer (KitwareMedical) generates it from the
standard; :data:`PROFILE_TABLE` names the edition. Private attributes go too.

One profile option applies, the **Retain UIDs Option** (PS3.15 E.3.9): study, series, instance and
frame-of-reference UIDs are kept. A SEG must name its source images by those UIDs for a viewer to
lay it over them (same study, same frame of reference, per-frame source instances); new UIDs
would make it an orphan, and its sources are never de-identified with it. The UIDs identify
nobody without access to the archive that issued them. Everything else the option would not keep,
the profile removes or blanks: names and identifiers, dates (dummy values where the SEG requires
one), descriptions, physicians, institution, clinical-trial attributes.

The patient's name and id, emptied by the profile, carry the case id instead (a dummy value the
profile allows), so a SEG can be matched to raysegment's own outputs.
"""

from __future__ import annotations

import functools

#: dicom-anonymizer's generated copy of PS3.15 Table E.1-1 (the 2026c edition of the standard).
PROFILE_TABLE = "dicomfields_2026c"


@functools.lru_cache(maxsize=1)
def profile_tags() -> dict[str, list[tuple[int, ...]]]:
    """The profile table by action (``D_TAGS``, ``Z_TAGS``, ``X_TAGS``, ``U_TAGS``, ...), tags as (group, element[, masks])."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    return dicom_anonymization_database_selector(PROFILE_TABLE)


def retained_uid_tags() -> list[tuple[int, ...]]:
    """What the Retain UIDs Option keeps: the UIDs (action U) and the references made of them (U*)."""
    tags = profile_tags()
    return tags["U_TAGS"] + tags["X_Z_U_STAR_TAGS"]


@functools.lru_cache(maxsize=1)
def _rules() -> dict:
    """The profile's action per tag, with the Retain UIDs Option and Z as zero length."""
    from dicomanonymizer import simpledicomanonymizer as anonymizer

    return {**anonymizer.initialize_actions(PROFILE_TABLE), **dict.fromkeys(profile_tags()["Z_TAGS"], _zero_length),
            **dict.fromkeys(retained_uid_tags(), anonymizer.keep)}


def deidentify(dataset, pseudonym: str) -> None:
    """Apply the profile with the Retain UIDs Option to ``dataset`` in place; ``pseudonym`` becomes its patient name and id."""
    from dicomanonymizer import simpledicomanonymizer as anonymizer
    from pydicom import Dataset
    from pydicom.sr.codedict import codes

    anonymizer.anonymize_dataset(dataset, None, delete_private_tags=True, base_rules_gen=_rules)
    dataset.PatientName = f"{pseudonym}^"  # family name only; the caret marks it as a complete name
    dataset.PatientID = pseudonym
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = f"PS3.15 Basic Profile, Retain UIDs Option ({PROFILE_TABLE})"  # LO: 64 characters at most
    methods = []
    for code in (codes.DCM.BasicApplicationConfidentialityProfile, codes.DCM.RetainUidsOption):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
        methods.append(item)
    dataset.DeidentificationMethodCodeSequence = methods


def _zero_length(dataset, tag) -> None:
    """The profile's Z, as zero length: dicom-anonymizer writes dummy dates (00010101), which read as real ones (an age of 2,000 years)."""
    element = dataset.get(tag)
    if element is not None:
        element.value = [] if element.VR == "SQ" else None
