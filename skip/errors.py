"""The one error vocabulary of skip.

Every rejection anywhere in skip (a malformed packet, a bad ICV, a replay, a refused legacy
algorithm, an invalid certificate, a bad config file) raises a :class:`SkipError` subclass that
carries a stable *reason code*. The same codes feed counters, logs, ``skipctl counters`` and
the docs, so a code, once published, is never renamed.

Codes are plain strings (cheap to use as dict keys in per-packet counters); :data:`REASONS`
lists every code with a one-line explanation for people. Adding a code means adding it here;
:func:`describe` and the tests check that nothing raises an unlisted code.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # --- wire parsing ---------------------------------------------------------------------
    "truncated": "the packet or field ends before its declared length",
    "bad_length": "a length field disagrees with the data around it",
    "bad_version": "an unsupported protocol version number",
    "bad_header": "a header field holds a value the format forbids",
    "bad_option": "a malformed IPv4 option or IPv6 extension-header option",
    "bad_checksum": "an IPv4 header checksum does not match",
    "unsupported_protocol": "a next-header / protocol value this code path cannot handle",
    "fragment": "a fragment arrived where a whole datagram is required",
    # --- ESP / AH engine --------------------------------------------------------------------
    "bad_spi": "the SPI does not belong to this security association",
    "bad_padding": "ESP padding or pad length is wrong after decryption",
    "bad_icv": "the integrity check value (MAC / AEAD tag) does not verify",
    "bad_block_size": "ciphertext length is not a multiple of the cipher block size",
    "replay": "the sequence number was already received",
    "replay_too_old": "the sequence number is left of the anti-replay window",
    "seq_zero": "sequence number 0 is never valid on the wire",
    "seq_exhausted": "the sender's sequence number would cycle: rekey first",
    "tfc_dummy": "a dummy (next header 59) packet, discarded by design",
    "unsupported_algorithm": "the algorithm is unknown to this build",
    "legacy_refused": "a legacy (broken or weak) algorithm was refused: opt in explicitly",
    "bad_key": "key material has the wrong size or form for the algorithm",
    "bad_sa": "the security association's parameters are inconsistent",
    # --- SKIP keying ------------------------------------------------------------------------
    "n_out_of_window": "the SKIP counter n differs from the local n by more than 1",
    "unknown_mkid": "no key is known for the source master key-ID or address",
    "not_our_mkid": "the destination master key-ID is not one of ours",
    "unknown_nsid": "a name-space id this implementation does not know",
    "unsupported_kij_alg": "the Kij algorithm is unknown or refused by policy",
    "unsupported_crypt_alg": "the Crypt algorithm is unknown or refused by policy",
    "unsupported_mac_alg": "the MAC algorithm is unknown or refused by policy",
    "unsupported_comp_alg": "a compression algorithm was requested; none is supported",
    "bad_public_value": "a Diffie-Hellman public value fails validation",
    "bad_group": "Diffie-Hellman parameters are unknown, too small or invalid",
    "no_kp": "the packet carries no traffic key (Kij Alg 0)",
    "queue_full": "the bounded queue of packets waiting for a certificate is full",
    "icmp_refused": "a SKIP ICMP message was unauthenticated, malformed or a reply to one",
    "rate_limited": "an answer was suppressed by its rate limit",
    "kp_unwrap_failed": "the wrapped traffic key (modern EKp) fails its key-wrap integrity check",
    "kp_limit": "too many live traffic keys from one peer: new ones are refused until old expire",
    "kp_stale": "the traffic key was made before this receiver started (a replay across a "
    "restart): the sender is told to make a new one",
    "kp_superseded": "the sender moved on to a newer traffic key and this one's grace period "
    "ended",
    "kij_too_weak": "the Kij algorithm is weaker than the traffic keys it would wrap "
    "(draft-06 s. 2.3)",
    "duplicate_public_value": "another principal already holds this Diffie-Hellman public value",
    "adp_unknown_address": "an algorithm-discovery answer was not sent: the request did not come "
    "from an address the peer is known at",
    "adp_too_large": "an algorithm-discovery answer was not sent: it would be larger than the "
    "request",
    "kij_cache_full": "the master-key cache is full of peers that must not be evicted",
    "no_identity": "no local SKIP identity matches the packet's source address or principal",
    "cdp_bad_version": "a CDP message with a version other than 1 (draft-ietf-ipsec-cdp-01)",
    "cdp_timeout": "no CDP server answered for the principal within the lookup's deadline",
    "cdp_not_found": "every CDP server asked answered GET FAILED for the principal (a hint)",
    "cert_pending": "the packet waits in the bounded queue for the peer's certificate",
    "cert_wait_expired": "a packet waited longer than allowed for its peer's certificate",
    "queue_evicted": "a packet waiting for a certificate made room for another principal",
    "nomadic_unheard": "a nomadic peer has sent no authenticated packet yet: no address to "
    "send to",
    "dns_bogus": "a DNS answer failed DNSSEC validation (a bad or expired signature, a broken "
    "chain of trust, a missing proof): refused (DNS-25)",
    "dns_insecure": "a DNS answer from a provably unsigned zone: its certificate is used only if "
    "it chains to a configured CA (DNS-25)",
    "dns_timeout": "no DNS server answered the certificate lookup within its deadline (DNS-13)",
    "dns_malformed": "a DNS response that does not parse or does not answer the query sent",
    "dns_withdrawn": "a DNSSEC-secure answer to a re-fetch no longer gives a discovered "
    "certificate that validates: the peer is dropped, its next packet asks again (DNS-12)",
    "dns_refresh_failed": "a discovered certificate could not be re-fetched (no answer, or "
    "one not secure enough to act on): it is kept and asked for again in 30 s",
    "discovery_evicted": "daemon.discovery_cache discovered certificates were held: the least "
    "recently used peer was forgotten (its next packet discovers it again)",
    # --- certificates -----------------------------------------------------------------------
    "cert_malformed": "the certificate, CRL or UDH encoding does not parse",
    "cert_expired": "the certificate is not valid at the given time",
    "cert_not_yet_valid": "the certificate's validity starts after the given time",
    "cert_untrusted": "no chain to a configured trust anchor",
    "cert_bad_signature": "a signature in the chain does not verify",
    "cert_revoked": "the certificate is listed in a current CRL",
    "cert_bad_usage": "key usage or basic constraints forbid this use",
    "cert_name_mismatch": "the certificate does not answer to the SKIP name asked for",
    "cert_key_type": "the certificate's key is not of the kind this use needs (DH vs. signing)",
    "cert_crl_invalid": "a CRL is outside its validity period or its signature does not verify",
    "cert_crl_missing": "policy requires a CRL for an issuer in the chain and none was given",
    "cert_exists": "the output file exists; pass --force to overwrite it",
    # --- operations -------------------------------------------------------------------------
    "policy_deny": "policy says deny for this traffic",
    "internal_error": "an unexpected exception while handling a packet (a bug; logged with "
    "its traceback)",
    "packet_too_big": "a packet does not fit the path MTU once protected; ICMP too-big was sent",
    "inner_source_mismatch": "an authenticated peer sent an inner packet from an address its "
    "policy does not give it",
    "config_invalid": "the configuration is invalid",
    "io_error": "a file or device could not be read or written",
    "in_use": "a port, socket path or device skipd needs is held by another process "
    "(another skipd?)",
    "self_test_failed": "skipd's start-up self-test: a probe packet did not survive protect "
    "and unprotect in a configured group and suite (a broken crypto library): skipd stops",
    # --- perfect forward secrecy (pfs-00, next-wave.md part 3) ------------------------------
    "pfs_mac": "an ephemeral certificate's MAC does not verify under Kij (PFS-13)",
    "pfs_bad_certificate": "an ephemeral certificate breaks a rule of pfs-00 s. 3 (version, "
    "EMKIDs, Protocol/Port, group, or a certificate type it must not carry)",
    "pfs_unknown_peer": "an ephemeral certificate from an address that names no known peer",
    "pfs_unexpected": "an ephemeral reply that answers no exchange in progress (late or replayed)",
    "pfs_expired": "a packet under an ephemeral key (EMKID) that expired or was never ours",
    "pfs_required": "policy requires PFS toward this peer and no ephemeral key is established "
    "yet: the packet waits (or is dropped) rather than go under the long-term key",
    "pfs_timeout": "the ephemeral exchange got no valid reply after every retransmission",
    "pfs_limit": "too many ephemeral exchanges in progress (per peer or in all)",
    # --- multicast (skip-mc-00, next-wave.md part 4) -----------------------------------------
    "not_a_member": "a GIK request from a principal or address not on the group's membership "
    "list: nothing is sent back (MC-5)",
    "stale_epoch": "a GIK response or rekey message whose key epoch is not newer than the one "
    "held (a replay, or a superseded key: MC-M2)",
    "group_replay": "a multicast packet that sender's traffic key already delivered (per-sender "
    "replay window, MC-M7)",
    "group_unknown": "a multicast SKIP packet for a group address this node holds no key for "
    "(MC-13)",
    "group_dst_nsid": "a multicast SKIP packet whose Dest NSID is not 0 (MC-13)",
    "group_algorithms": "a multicast SKIP header whose algorithms differ from the group's "
    "(MC-7, MC-14)",
    "group_expired": "the group key Kg has expired, or this node was never given one",
    "group_epoch_unknown": "the multicast Kp unwraps under neither the current nor the "
    "previous epoch's Kgn (an evicted sender, or an epoch this node missed: MC-M6)",
    "group_limit": "a bound on groups, members or sender keys per group was reached "
    "(MC-M10)",
    "gik_wrong_owner": "a GIK response that did not come from the group's configured owner "
    "(MC-M2)",
    "gik_unexpected": "a GIK response that echoes no request in progress (late or replayed)",
    "gik_bad_signature": "a rekey message whose owner signature does not verify",
    "gik_epoch_gap": "a rekey that builds on an epoch this member does not hold (it missed "
    "one): the member asks its owner again over unicast",
    "gik_unwrap_failed": "a wrapped key of a rekey or response does not unwrap under the key "
    "it names",
    # --- offline decryption (skip-decrypt, docs/decrypt.md) ---------------------------------
    "bad_capture": "a capture file that is not pcap or pcapng, or breaks one of its bounds",
    "bad_keylog": "a traffic-key log line that does not parse (docs/decrypt.md)",
    "no_principal": "a captured packet names a principal no given certificate answers to",
    "no_private_key": "a captured packet between two known principals, neither of whose "
    "private keys was given",
    "ephemeral_key": "a captured packet under an ephemeral key (PFS EMKID) with no key-log "
    "entry: its keys were erased, so nothing else opens it",
}


class SkipError(Exception):
    """Base of every error skip raises on purpose.

    ``reason`` is a stable code from :data:`REASONS`; ``detail`` is for people and may change.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unlisted reason code {reason!r}: add it to skip.errors.REASONS")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ParseError(SkipError):
    """Bytes on the wire (or in a file) do not form a valid structure."""


class IntegrityError(SkipError):
    """Authentication failed: bad ICV, bad padding after decryption."""


class ReplayError(SkipError):
    """A sequence number was replayed or fell outside the window."""


class AlgorithmError(SkipError):
    """An algorithm is unknown, refused by policy, or given unusable keys."""


class KeyingError(SkipError):
    """SKIP keying failed: wrong n, unknown peer, bad DH value."""


class CertificateError(SkipError):
    """A certificate, CRL or UDH value failed parsing or validation."""


class PolicyError(SkipError):
    """Configured policy forbids the operation."""


class ConfigError(SkipError):
    """A configuration file or command-line input is invalid."""


def describe(reason: str) -> str:
    """The human explanation of a reason code (for logs, skipctl and docs)."""
    return REASONS.get(reason, "unknown reason code")
