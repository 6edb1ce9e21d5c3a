"""The 40 CelebA attribute names and the documented presets."""

from __future__ import annotations

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)

#: The 8 attributes the seed dropped. They are judgements of shape or appeal rather than visible
#: facts, and annotators disagree on them: Wu et al. ("Consistency and Accuracy of CelebA Attribute
#: Values", CVPRW 2023) re-annotated CelebA and found Oval_Face, Pointy_Nose and High_Cheekbones
#: near random between annotators, with Attractive, Big_Lips, Big_Nose, Narrow_Eyes and
#: Arched_Eyebrows the next least consistent. Training on them mostly fits annotator noise.
UNRELIABLE_ATTRIBUTES: tuple[str, ...] = (
    "Attractive", "Oval_Face", "Pointy_Nose", "High_Cheekbones",
    "Big_Lips", "Big_Nose", "Narrow_Eyes", "Arched_Eyebrows",
)

PRESETS: dict[str, tuple[str, ...]] = {
    "all40": CELEBA_ATTRIBUTES,
    "reliable32": tuple(a for a in CELEBA_ATTRIBUTES if a not in UNRELIABLE_ATTRIBUTES),
}


def resolve_attributes(selection: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A preset name (``all40``, ``reliable32``) or an explicit list of names -> attribute tuple.

    Raises ValueError naming every unknown attribute.
    """
    if isinstance(selection, str):
        if selection not in PRESETS:
            raise ValueError(f"unknown attribute preset {selection!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[selection]
    unknown = [a for a in selection if a not in CELEBA_ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown CelebA attribute(s): {unknown}")
    if len(set(selection)) != len(selection):
        raise ValueError(f"attribute selection lists a name twice: {list(selection)}")
    if not selection:
        raise ValueError("attribute selection is empty")
    return tuple(selection)
