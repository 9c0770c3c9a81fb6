"""The shared ESP/AH engine (see docs/engine.md).

``SecurityAssociation(protocol, spi, mode, ...)`` builds an ESP or AH SA;
``sa.protect(packet)`` / ``sa.unprotect(packet)`` map a whole IP datagram to a whole IP
datagram.  :func:`peek` finds protocol and SPI of a received datagram for SA lookup.
"""

from skip.ipsec.ah import AhSA
from skip.ipsec.counters import Counters
from skip.ipsec.esp import EspSA
from skip.ipsec.peek import peek
from skip.ipsec.sa import SecurityAssociation

__all__ = ["AhSA", "Counters", "EspSA", "SecurityAssociation", "peek"]
