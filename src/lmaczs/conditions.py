"""Moved to :mod:`lmaczs.evaluation.conditions`; this name stays importable (it is the same module object)."""

import sys

from .evaluation import conditions as _module

sys.modules[__name__] = _module
