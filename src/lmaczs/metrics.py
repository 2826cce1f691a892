"""Moved to :mod:`lmaczs.evaluation.metrics`; this name stays importable (it is the same module object)."""

import sys

from .evaluation import metrics as _module

sys.modules[__name__] = _module
