"""CLIP-IQA antonym prompt pairs (torchmetrics' table) and parsing of user prompt specifications."""

from __future__ import annotations

from collections.abc import Sequence

# name -> (positive, negative); each is "<word> photo."
NAMED_PROMPTS: dict[str, tuple[str, str]] = {
    "quality": ("Good photo.", "Bad photo."),
    "brightness": ("Bright photo.", "Dark photo."),
    "noisiness": ("Clean photo.", "Noisy photo."),
    "colorfullness": ("Colorful photo.", "Dull photo."),
    "sharpness": ("Sharp photo.", "Blurry photo."),
    "contrast": ("High contrast photo.", "Low contrast photo."),
    "complexity": ("Complex photo.", "Simple photo."),
    "natural": ("Natural photo.", "Synthetic photo."),
    "happy": ("Happy photo.", "Sad photo."),
    "scary": ("Scary photo.", "Peaceful photo."),
    "new": ("New photo.", "Old photo."),
    "warm": ("Warm photo.", "Cold photo."),
    "real": ("Real photo.", "Abstract photo."),
    "beautiful": ("Beautiful photo.", "Ugly photo."),
    "lonely": ("Lonely photo.", "Sociable photo."),
    "relaxing": ("Relaxing photo.", "Stressful photo."),
}

PromptSpec = str | tuple | list


def _one(spec) -> tuple[str, str]:
    if isinstance(spec, str):
        if spec in NAMED_PROMPTS:
            return NAMED_PROMPTS[spec]
        if "|" in spec:
            pos, neg = (p.strip() for p in spec.split("|", 1))
            if pos and neg:
                return pos, neg
        raise ValueError(f"prompt {spec!r} is neither a named pair ({', '.join(NAMED_PROMPTS)}) nor a "
                         "'positive|negative' string")
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and all(isinstance(s, str) and s.strip() for s in spec):
        return spec[0].strip(), spec[1].strip()
    raise ValueError(f"prompt {spec!r} must be a name, a 'positive|negative' string or a (positive, negative) pair")


def parse_prompts(prompt: PromptSpec) -> tuple[list[tuple[str, str]], bool]:
    """Return ``(pairs, is_list)``. A single spec gives one pair; a list of specs gives one pair per entry.

    A 2-element list/tuple of plain sentences that are not names (``("Sharp photo.", "Blurry photo.")``) is one
    custom pair; a list of names or pairs is a list of prompts.
    """
    if isinstance(prompt, str):
        return [_one(prompt)], False
    if isinstance(prompt, (tuple, list)):
        items: Sequence = prompt
        if (len(items) == 2 and all(isinstance(s, str) for s in items)
                and not any(s in NAMED_PROMPTS or "|" in s for s in items)):
            return [_one(tuple(items))], False
        if not items:
            raise ValueError("prompt list is empty")
        return [_one(p) for p in items], True
    raise ValueError(f"prompt must be a string, a pair or a list, got {type(prompt).__name__}")


def prompt_label(pair: tuple[str, str]) -> str:
    """A stable short label for a pair: its name when it is a named pair, else 'positive|negative'."""
    for name, p in NAMED_PROMPTS.items():
        if p == pair:
            return name
    return f"{pair[0]}|{pair[1]}"
