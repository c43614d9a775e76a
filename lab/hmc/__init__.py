"""HMC simulator library for the QEMU hvpipe model; see hmc.py.

Scripts put lab/hmc on sys.path and ``import hmc`` (the module); with lab/
on sys.path ``import hmc`` gives this package, which re-exports the same API.
"""
from .hmc import *          # noqa: F401,F403
from .hmc import __all__    # noqa: F401
