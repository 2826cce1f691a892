"""Moved to :mod:`lmaczs.evaluation.localization`; this name stays importable (it is the same module object)."""

import sys

from .evaluation import localization as _module

sys.modules[__name__] = _module
