"""Loading transformers models quietly and turning their many exception types into one-line BackendErrors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..errors import BackendError


@contextmanager
def quiet_transformers_load(what: str) -> Iterator[None]:
    """Silence transformers' weight-loading chatter and progress bars; any failure → ``BackendError(what: …)``."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:  # transformers raises many types for broken or missing model dirs
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"{what}: {msg}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
