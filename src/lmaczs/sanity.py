"""Moved to :mod:`lmaczs.evaluation.sanity`; this name stays importable (it is the same module object)."""

import sys

from .evaluation import sanity as _module

sys.modules[__name__] = _module
