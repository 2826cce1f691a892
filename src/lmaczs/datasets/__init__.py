"""Datasets of the evaluation protocol (``../shared/data/README.md``): ESC-50, UrbanSound8K and LJ Speech.

Each loader yields :class:`Clip` records (path, class, fold/split, source recording); :mod:`.captions` turns a class
into training captions and evaluation prompts; :mod:`.pools` fixes which clips each model trains on and which are
held out.
"""

from .captions import CAPTION_TEMPLATES, DESCRIPTIONS, EVAL_TEMPLATE, captions_for, eval_prompt, label_text, mixture_caption
from .clip import SHARED_CLASSES, Clip
from .esc50 import Esc50Clip, is_esc50_folder, read_esc50, select
from .pools import POOLS, data_root, held_out, read_dataset, training_pool, validation_split
from .speech import is_ljspeech_folder, read_ljspeech
from .splits import class_names, grouped_folds, grouped_split
from .urbansound8k import is_urbansound8k_folder, read_urbansound8k

__all__ = [
    "CAPTION_TEMPLATES", "DESCRIPTIONS", "EVAL_TEMPLATE", "POOLS", "SHARED_CLASSES", "Clip", "Esc50Clip",
    "captions_for", "class_names", "data_root", "eval_prompt", "grouped_folds", "grouped_split", "held_out",
    "is_esc50_folder", "is_ljspeech_folder", "is_urbansound8k_folder", "label_text", "mixture_caption",
    "read_dataset", "read_esc50", "read_ljspeech", "read_urbansound8k", "select", "training_pool",
    "validation_split",
]
