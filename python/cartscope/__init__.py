"""cartscope: scanpy's pipeline on a GPU or the CPU, in place on AnnData, with the CAR-T layer.

``cartscope.pp`` and ``cartscope.tl`` take scanpy's function names, defaults and keys, so a
notebook swaps ``sc.pp.pca(adata)`` for ``cartscope.pp.pca(adata)``; ``cartscope.run`` runs
the whole recipe of the ``cartscope`` command line in one call, and ``cartscope.cart`` adds
the CAR-T calls and report. The computing is the Rust library the CLI runs.
"""

from __future__ import annotations

from . import _core, cart, pp, tl
from ._read import read
from ._run import run

__version__: str = _core.__version__

__all__ = ["pp", "tl", "cart", "run", "read", "devices", "__version__"]


def devices() -> list[dict]:
    """The compute backends: for each request (``cpu``, ``auto``, ``gpu``) the backend it
    opens, its device and driver, and why ``auto`` fell back to the CPU (or the error of
    ``gpu`` where no adapter exists)."""
    return _core.devices()
