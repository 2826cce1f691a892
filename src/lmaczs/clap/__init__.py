"""CLAP backends behind one protocol, and :func:`load_backend` that resolves a spec string.

Specs:
    ``default`` / ``esc50-eval``         the embedded models shipped in the package
    ``tiny[:SEED]``                      a tiny random model for tests
    ``hf:<dir or hub id>``               ``transformers.ClapModel`` (LAION CLAP / HTSAT)
    ``msclap2022:<path to .pth>``        MS-CLAP 2022 (CNN14 + BERT), the paper's model
"""

from __future__ import annotations

from .base import AudioEncoding, ClapBackend, MaskingDomain, MelDomain, MelFrontEnd, StftDomain
from ..errors import BackendError

EMBEDDED = ("default", "esc50-eval")


def load_backend(spec: str, domain: str = "stft") -> ClapBackend:
    """Build the backend a spec names (see the module docstring), in the given masking domain."""
    kind, _, arg = spec.partition(":")
    if kind == "tiny":
        from .tiny import TinyClap

        try:
            backend: ClapBackend = TinyClap(seed=int(arg or 0))
        except ValueError:
            raise BackendError(f"tiny backend seed must be an integer, got {arg!r}") from None
    elif kind == "hf":
        from .hf import HfClap

        backend = HfClap.from_pretrained(arg)
    elif kind == "msclap2022":
        from .msclap import MsClap2022

        backend = MsClap2022.from_checkpoint(arg)
    elif kind in EMBEDDED or kind == "embedded":
        from .embedded import EmbeddedClap

        backend = EmbeddedClap.from_package(arg if kind == "embedded" else kind)
    else:
        raise BackendError(f"unknown CLAP backend {spec!r}; use default, esc50-eval, tiny[:SEED], "
                           "hf:<dir or hub id> or msclap2022:<checkpoint.pth>")
    return backend.set_domain(domain)


__all__ = ["AudioEncoding", "ClapBackend", "MaskingDomain", "MelDomain", "MelFrontEnd", "StftDomain",
           "load_backend", "EMBEDDED"]
