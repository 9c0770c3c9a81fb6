"""Key material for offline decryption: certificates name the principals, private keys open
them. Pure (the CLI reads the files)."""

from __future__ import annotations

from collections.abc import Sequence

from skip.errors import ConfigError
from skip.offline.decryptor import Principal
from skip.pki.certificate import Certificate
from skip.pki.dhkey import DHPrivateKey


def principals(certificates: Sequence[Certificate], private_keys: Sequence[DHPrivateKey]
               ) -> list[Principal]:
    """One principal per DH certificate (CA certificates in a bundle are passed over), with
    the private key whose public value it certifies.

    Certificates are not validated: offline, the user vouches for the material, and a
    capture may be older than a certificate's expiry or a CRL. A private key that no
    certificate certifies is refused: without a certificate its names are unknown, so no
    packet could be matched to it, and saying so beats ignoring a key the user gave."""
    by_public = {(k.group.name, k.public.public_value): k for k in private_keys}
    out: list[Principal] = []
    used: set[tuple[str, bytes]] = set()
    for cert in certificates:
        key = cert.dh_key
        if key is None:
            continue
        ident = (key.group.name, key.public_value)
        private = by_public.get(ident)
        if private is not None:
            used.add(ident)
        out.append(Principal(cert.subject_text or cert.fingerprint[:16], key.group,
                             key.public_value, frozenset(cert.skip_names()),
                             private.private if private is not None else None))
    unmatched = [k for ident, k in by_public.items() if ident not in used]
    if unmatched:
        raise ConfigError("config_invalid", f"{len(unmatched)} private key(s) match no "
                          "certificate given: add the certificate of each (--cert), which "
                          "names the host")
    return out
