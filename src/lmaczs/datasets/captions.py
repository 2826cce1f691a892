"""Captions and prompts for every class of every dataset: training captions, evaluation prompts, mixtures.

Captions, not class ids, reach the models: a class's training captions are the templates filled with its readable
label plus a few short free descriptions ("a dog barks"); its evaluation prompt is ``"this is the sound of
<label>"``. A mixture of sources gets captions that name each source ("a dog barks while rain falls").
"""

from __future__ import annotations

import random

EVAL_TEMPLATE = "this is the sound of {}"

CAPTION_TEMPLATES: tuple[str, ...] = (
    "this is the sound of {}",
    "the sound of {}",
    "a recording of {}",
    "{} can be heard",
    "{}",
    "a sound of {}",
    "an audio clip of {}",
    "we hear {}",
)

# Readable labels that are not just the class name without underscores.
LABELS: dict[str, str] = {"speech": "a person speaking"}

# Short descriptions per readable label, in the spirit of free captions.
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    # ESC-50
    "dog": ("a dog barks", "a dog barking"), "rooster": ("a rooster crows", "a cock crowing"),
    "pig": ("a pig grunts", "pigs oinking"), "cow": ("a cow moos", "cattle mooing"),
    "frog": ("a frog croaks", "frogs croaking"), "cat": ("a cat meows", "a cat mewing"),
    "hen": ("a hen clucks", "chickens clucking"), "insects": ("insects buzz", "buzzing insects"),
    "sheep": ("a sheep bleats", "sheep baaing"), "crow": ("a crow caws", "crows cawing"),
    "rain": ("rain falls", "rainfall"), "sea waves": ("waves crash on the shore", "the sea"),
    "crackling fire": ("a fire crackles", "a burning fire"), "crickets": ("crickets chirp", "chirping crickets"),
    "chirping birds": ("birds chirp", "birdsong"), "water drops": ("water drips", "dripping water"),
    "wind": ("the wind blows", "a gust of wind"), "pouring water": ("water is poured", "pouring liquid"),
    "toilet flush": ("a toilet is flushed", "a flushing toilet"),
    "thunderstorm": ("thunder rumbles", "a thunderstorm"), "crying baby": ("a baby cries", "an infant crying"),
    "sneezing": ("someone sneezes", "a sneeze"), "clapping": ("people clap", "applause"),
    "breathing": ("someone breathes", "heavy breathing"), "coughing": ("someone coughs", "a cough"),
    "footsteps": ("footsteps", "someone walking"), "laughing": ("someone laughs", "laughter"),
    "brushing teeth": ("someone brushes teeth", "a toothbrush scrubbing"),
    "snoring": ("someone snores", "a person snoring"), "drinking sipping": ("someone sips a drink", "gulping"),
    "door wood knock": ("someone knocks on a door", "knocking on wood"),
    "mouse click": ("a computer mouse clicks", "mouse clicking"),
    "keyboard typing": ("someone types on a keyboard", "typing"),
    "door wood creaks": ("a door creaks", "a creaking door"), "can opening": ("a can is opened", "a can popping open"),
    "washing machine": ("a washing machine runs", "a washer spinning"),
    "vacuum cleaner": ("a vacuum cleaner runs", "vacuuming"), "clock alarm": ("an alarm clock rings", "an alarm"),
    "clock tick": ("a clock ticks", "ticking"), "glass breaking": ("glass breaks", "shattering glass"),
    "helicopter": ("a helicopter flies", "helicopter rotor noise"), "chainsaw": ("a chainsaw runs", "sawing"),
    "siren": ("a siren wails", "an emergency siren"), "car horn": ("a car honks", "a horn honking"),
    "engine": ("an engine runs", "a motor idling"), "train": ("a train passes", "a train on rails"),
    "church bells": ("church bells ring", "bells tolling"), "airplane": ("an airplane flies over", "a jet"),
    "fireworks": ("fireworks explode", "firecrackers"), "hand saw": ("a hand saw cuts wood", "sawing by hand"),
    # UrbanSound8K ("siren" and "car horn" above serve both datasets)
    "air conditioner": ("an air conditioner hums", "the hum of an air conditioner"),
    "children playing": ("children play and shout", "kids playing outside"),
    "dog bark": ("a dog barks", "a barking dog"),
    "drilling": ("a power drill whirs", "someone drilling"),
    "engine idling": ("an engine idles", "an idling motor"),
    "gun shot": ("a gun is fired", "gunshots"),
    "jackhammer": ("a jackhammer pounds", "a pneumatic drill hammering"),
    "street music": ("music plays in the street", "street musicians playing"),
    # speech (LJ Speech: one woman reading a book aloud)
    "a person speaking": ("a woman reading aloud", "someone talking", "a woman speaks", "speech",
                          "a narrator reads a book", "a female voice"),
}


def label_text(category: str) -> str:
    """Readable label of a class name: ``"crying_baby"`` → ``"crying baby"``, ``"speech"`` → ``"a person
    speaking"``."""
    return LABELS.get(category, category.replace("_", " ").strip())


def eval_prompt(category: str) -> str:
    """The evaluation prompt of a class: ``"this is the sound of <label>"``."""
    return EVAL_TEMPLATE.format(label_text(category))


def captions_for(category: str) -> list[str]:
    """All training captions of a class: templates × label, plus its short descriptions (each once)."""
    label = label_text(category)
    return list(dict.fromkeys([t.format(label) for t in CAPTION_TEMPLATES] + list(DESCRIPTIONS.get(label, ()))))


_JOINERS = ("{} while {}", "{} and {}", "{}, with {} in the background", "{} mixed with {}")


def mixture_caption(categories: list[str], rng: random.Random) -> str:
    """A caption naming every source of a mixture, from each class's descriptions (or label):
    ``["dog", "rain"]`` → e.g. ``"a dog barks while rain falls"``."""
    parts = [rng.choice(DESCRIPTIONS.get(label_text(c), (label_text(c),))) for c in categories]
    text = parts[0]
    for part in parts[1:]:
        text = rng.choice(_JOINERS).format(text, part)
    return text
