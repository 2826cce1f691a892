"""Moved to :mod:`lmaczs.evaluation.methods`; this name stays importable (it is the same module object)."""

import sys

from .evaluation import methods as _module

sys.modules[__name__] = _module
