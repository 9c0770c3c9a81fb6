"""discovery layer: finding peers' certificates (CDP, the DNS), sans-I/O; see docs/discovery.md."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# dnspython's DNSSEC module imports its DSA support (which skip never validates with: RFC 8624
# forbids it, skip.discovery.dnssec refuses it) and cryptography warns about DSA on import;
# an operator should not read that on every skipd start
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import dns.dnssec  # noqa: F401
