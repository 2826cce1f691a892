"""lmaczs: listenable explanations of zero-shot audio classifiers (LMAC-ZS) for CLAP models."""

__version__ = "0.1.0"

from .errors import LmacError  # noqa: E402

__all__ = ["Explainer", "Explanation", "LmacError", "__version__"]


def __getattr__(name: str):  # lazy: `import lmaczs` stays light for the CLI's --help
    if name in ("Explainer", "Explanation"):
        from . import explain

        return getattr(explain, name)
    raise AttributeError(name)
