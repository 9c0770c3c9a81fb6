"""skip: SKIP (Simple Key-Management for Internet Protocols) and a shared ESP/AH engine.

Everything in this package except :mod:`skip.daemon` and :mod:`skip.cli` is sans-I/O: bytes in,
bytes and events out, and time is always a parameter (``now``, POSIX seconds).
"""

__version__ = "0.1.0"
