"""Who this node is and whom it knows: local principals and peers, indexed the ways packets
name them (by NSID/MKID, by address, by public value), and each peer's state.

A packet names its principals by SKIP name: (NSID, MKID), or for NSID 0 the IP address. The
tables here answer "which principal is that" in one dictionary look-up each way, and keep
the rule that one public value belongs to one principal (docs/protocol/decisions.md 3.13)
checkable in O(1) per added peer, so that loading 10,000 peers stays linear.
"""

from __future__ import annotations

from skip.errors import ConfigError
from skip.keying.identity import LocalIdentity, Peer
from skip.keying.keys import PeerState
from skip.keying.policy import KeyingPolicy
from skip.keying.suite import Suite

PublicKey = tuple[str, bytes]  # (group name, public value)


class Principals:
    def __init__(self) -> None:
        self.identities: dict[str, LocalIdentity] = {}
        self.identity_by_mkid: dict[tuple[int, bytes], LocalIdentity] = {}
        self.identity_by_addr: dict[bytes, LocalIdentity] = {}
        self._identity_publics: dict[PublicKey, str] = {}
        self.peers: dict[str, Peer] = {}
        self.peer_by_mkid: dict[tuple[int, bytes], Peer] = {}
        self.peer_by_addr: dict[bytes, Peer] = {}
        self._peer_publics: dict[PublicKey, dict[str, Peer]] = {}
        self.states: dict[str, PeerState] = {}
        self.chosen: dict[str, Suite] = {}  # suites algorithm discovery chose, by peer name

    # --- local principals ------------------------------------------------------------------

    def add_identity(self, identity: LocalIdentity) -> None:
        if identity.name in self.identities:
            raise ConfigError("config_invalid", f"identity {identity.name!r} exists")
        for g, public in identity.publics.items():
            for other in self._peer_publics.get((g, public), {}).values():
                raise ConfigError("duplicate_public_value", f"local principal "
                                  f"{identity.name!r} has the public value of peer {other.name!r}")
        self.identities[identity.name] = identity
        if identity.nsid:
            self.identity_by_mkid[(identity.nsid, identity.mkid)] = identity
        for a in identity.addresses:
            # several principals may share an address (one key pair, several names): the
            # first added answers for it when a packet names us by address (NSID 0)
            self.identity_by_addr.setdefault(a, identity)
        for g, public in identity.publics.items():
            self._identity_publics[(g, public)] = identity.name

    def remove_identity(self, name: str) -> LocalIdentity | None:
        old = self.identities.pop(name, None)
        if old is None:
            return None
        if old.nsid and self.identity_by_mkid.get((old.nsid, old.mkid)) is old:
            del self.identity_by_mkid[(old.nsid, old.mkid)]
        for a in old.addresses:
            if self.identity_by_addr.get(a) is old:
                del self.identity_by_addr[a]
                heir = next((i for i in self.identities.values() if a in i.addresses), None)
                if heir is not None:
                    self.identity_by_addr[a] = heir
        for g, public in old.publics.items():
            if self._identity_publics.get((g, public)) == name:
                del self._identity_publics[(g, public)]
        return old

    def identity_for(self, them: Peer) -> LocalIdentity | None:
        """The local principal to speak as toward a peer: the one it names (``Peer.local``),
        else the first one that has a key in the peer's group."""
        if them.local:
            me = self.identities.get(them.local)
            return me if me is not None and them.group in me.keys else None
        return next((i for i in self.identities.values() if them.group in i.keys), None)

    # --- peers -----------------------------------------------------------------------------

    def check_unique(self, peer: Peer) -> None:
        """One public value, one principal (docs/protocol/decisions.md 3.13).

        A CA that certifies A's public value under E's name would otherwise make this node
        take A's packets for E's (an unknown key-share), and a peer holding one of our own
        public values could be sent our own packets back as its (reflection). Peers of one
        ``principal`` (one certificate behind several policy rules) may share it.
        """
        key = (peer.group, peer.public)
        for other in self._peer_publics.get(key, {}).values():
            if other.name != peer.name and other.principal != peer.principal:
                raise ConfigError("duplicate_public_value", f"peer {peer.name!r} has the "
                                  f"public value of peer {other.name!r}")
        mine = self._identity_publics.get(key)
        if mine is not None:
            raise ConfigError("duplicate_public_value", f"peer {peer.name!r} has the "
                              f"public value of local principal {mine!r}")

    def index(self, peer: Peer, outer: bytes | None) -> None:
        """Make ``peer`` findable by its names (``outer``: its tunnel end point, which also
        names it unless it is nomadic)."""
        self.peers[peer.name] = peer
        if peer.nsid:
            self.peer_by_mkid[(peer.nsid, peer.mkid)] = peer
        for a in peer.addresses:
            self.peer_by_addr[a] = peer
        if outer is not None and not peer.nomadic:
            self.peer_by_addr.setdefault(outer, peer)
        self._peer_publics.setdefault((peer.group, peer.public), {})[peer.name] = peer

    def unindex(self, peer: Peer) -> None:
        if self.peers.get(peer.name) is peer:
            del self.peers[peer.name]
        if peer.nsid and self.peer_by_mkid.get((peer.nsid, peer.mkid)) is peer:
            del self.peer_by_mkid[(peer.nsid, peer.mkid)]
        state = self.states.get(peer.name)
        for a in (*peer.addresses, *((state.tunnel,) if state and state.tunnel else ())):
            if self.peer_by_addr.get(a) is peer:
                del self.peer_by_addr[a]
        sharing = self._peer_publics.get((peer.group, peer.public))
        if sharing is not None and sharing.get(peer.name) is peer:
            del sharing[peer.name]
            if not sharing:
                del self._peer_publics[(peer.group, peer.public)]

    def suite_for(self, peer: Peer, policy: KeyingPolicy) -> Suite:
        """ADP choice > the peer's configured suite > the policy default for its group."""
        chosen = self.chosen.get(peer.name) or peer.suite
        if chosen is not None:
            return chosen
        if peer.group.startswith("skip-"):
            return policy.legacy_default
        return policy.modern_default
