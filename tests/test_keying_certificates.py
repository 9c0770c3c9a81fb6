"""Unknown peer -> certificate request -> a validated UDH value from skip.pki -> release."""

from __future__ import annotations

from skip.crypto.dh import GROUPS
from skip.keying import CertificateNeeded, KeyingPolicy, LocalIdentity, Peer, SkipEndpoint
from skip.pki import generate_key, make_udh, parse_udh, validate_udh

from .keying_harness import NOW, STARTED, identity, peer_of, udp


def test_udh_named_sender_is_fetched_validated_and_released() -> None:
    group = GROUPS["skip-1024"]
    key = generate_key(group, rng=lambda n: bytes(range(1, n + 1)))
    udh = make_udh(key.public, int(NOW) - 86400, int(NOW) + 86400)
    name = udh.name.mkid  # NSID 8: MD5 of the UDH encoding
    sender = SkipEndpoint(
        [LocalIdentity.create("a", {"skip-1024": key.private}, nsid=8, mkid=name,
                              addresses=["10.0.0.1"])],
        [peer_of(identity("b", ("skip-1024",)), "skip-1024")], started=STARTED,
        policy=KeyingPolicy(allow_legacy=True))
    receiver = SkipEndpoint([identity("b", ("skip-1024",))],
                            policy=KeyingPolicy(allow_legacy=True), started=STARTED)
    assert receiver.unprotect(sender.protect(udp(), NOW), NOW) is None
    [need] = receiver.events()
    assert isinstance(need, CertificateNeeded)
    assert (need.nsid, need.mkid, need.name.encode()) == (8, name, b"\x08" + name)
    # The driver fetches the UDH value (e.g. by CDP), checks it against the name it asked for
    # and hands the believed public value over.
    fetched = parse_udh(udh.encoding)
    believed = validate_udh(fetched, NOW, expected_name=need.mkid)
    peer = Peer.from_peer_key("a", believed)
    assert (peer.nsid, peer.mkid, peer.group) == (8, name, "skip-1024")
    [released] = receiver.add_peer(peer, NOW + 1)
    assert released.packet == udp() and released.peer == "a"
