"""Moved to :mod:`lmaczs.evaluation.separation`; this name stays importable (it is the same module object)."""

import sys

from .evaluation import separation as _module

sys.modules[__name__] = _module
