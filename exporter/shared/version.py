"""The distribution's version, in a leaf module both halves may import.

The kit needs it for its heartbeat rows and the sidecar for `build_info`; neither should import
the package root (which re-exports the kit) to get it.
"""

__version__ = "0.1.0"
