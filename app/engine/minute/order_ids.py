"""Client order ids that say whose decision an order was: installation, card, minute and side.

Format ``at2-<installation>-<card>-<YYYYMMDDTHHMM>-<side>``, e.g.
``at2-3f9a0c12d4e5b6a7-42-20261201T1530-buy`` (45 characters for card ids below a million; Alpaca
allows 128). The installation id is 16 random hex digits made once per system.db and stored in
``system_config``: a new system.db is a new installation, a restored backup is the same one. From
an id alone, broker-side reconciliation knows whether an order is ours and which card it books to;
an order placed by hand or by another installation never parses as ours. A netted order of several
cards (:mod:`app.engine.minute.netting`) has ``at2-<installation>-net-<minute>-<4 hex>-<shares>``, e.g.
``at2-3f9a0c12d4e5b6a7-net-20261201T1530-9c1e-4b10.7s3`` (card 4 buys 10, card 7 sells 3): its
cards' shares are in the journal and, when they fit, in the id itself.

Ids of the earlier scheme, ``at<journal_id>-<card>-<YYYYMMDDTHHMM>-<side>`` (``journal_id``: 6 hex
digits per system.db), still parse as ours when that system.db's ``journal_id`` matches.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from collections.abc import Sequence
from datetime import datetime, timezone

from app.storage.system_store import SystemStore

INSTALLATION_ID_KEY = "installation_id"
LEGACY_JOURNAL_ID_KEY = "journal_id"
VERSION = "at2"
MAX_ID_LENGTH = 128  # Alpaca's limit

_MINUTE = "%Y%m%dT%H%M"
_TAIL = r"-(?P<card>[1-9][0-9]{0,17})-(?P<minute>\d{8}T\d{4})-(?P<side>buy|sell)"
_CURRENT = re.compile(r"at2-(?P<inst>[0-9a-f]{16})" + _TAIL)
_LEGACY = re.compile(r"at(?P<inst>[0-9a-f]{6})" + _TAIL)
# A netted order of several cards: ``at2-<installation>-net-<minute>-<4 hex>-<shares>``, the shares
# ``<card>b<qty>.<card>s<qty>...`` when they fit in Alpaca's 128 characters, else ``x``.
_SHARE = r"[1-9][0-9]{0,17}[bs][1-9][0-9]{0,9}"
_NET = re.compile(r"at2-(?P<inst>[0-9a-f]{16})-net-(?P<minute>\d{8}T\d{4})-[0-9a-f]{4}"
                  r"-(?P<shares>x|" + _SHARE + r"(?:\." + _SHARE + r")*)")
_SIDE_LETTER = {"buy": "b", "sell": "s"}


@dataclass(frozen=True, slots=True)
class OrderIdentity:
    """What a client order id of this installation says about its order."""

    card: int
    minute: datetime  # the decision minute, UTC
    side: str  # 'buy' | 'sell'
    legacy: bool = False  # made by the earlier scheme


@dataclass(frozen=True, slots=True)
class NetIdentity:
    """What a netted order's client order id says: its minute and, when they fit, the cards' shares."""

    minute: datetime
    shares: tuple[tuple[int, str, int], ...] | None  # (card, side, shares); None: only the journal knows


class ClientOrderIds:
    """Makes and reads this installation's client order ids (one per system.db)."""

    def __init__(self, installation_id: str, legacy_journal_id: str | None = None) -> None:
        if not re.fullmatch(r"[0-9a-f]{16}", installation_id or ""):
            raise ValueError("an installation id is 16 lower-case hex digits")
        self.installation_id = installation_id
        self._legacy = legacy_journal_id if legacy_journal_id and re.fullmatch(r"[0-9a-f]{6}", legacy_journal_id) \
            else None

    @classmethod
    def for_store(cls, store: SystemStore) -> ClientOrderIds:
        """The ids of the installation whose system.db ``store`` is; its id is made (durably) on first use."""
        inst = store.get_config(INSTALLATION_ID_KEY)
        if not inst:
            inst = secrets.token_hex(8)
            # Synced before any order can carry it: ids with an id the file forgot would be orphans.
            store.set_configs({INSTALLATION_ID_KEY: inst}, durable=True)
        return cls(inst, store.get_config(LEGACY_JOURNAL_ID_KEY))

    def make(self, card: int, minute: datetime, side: str) -> str:
        """The one id of the decision (card, minute, side): the same decision is never sent twice."""
        return f"{VERSION}-{self.installation_id}-{card}-{minute.astimezone(timezone.utc):{_MINUTE}}-{side}"

    def make_net(self, minute: datetime, shares: Sequence[tuple[int, str, int]]) -> str:
        """A new id for a netted order of ``minute`` whose cards want ``shares`` ((card, side, qty), ...).

        The cards' shares are written into the id when it stays within Alpaca's 128 characters, so
        that the broker's own order list can book them even if the journal lost its rows. Random in
        the middle: a minute re-decided after a restart may net the cards not sent yet again.
        """
        stamp = f"{minute.astimezone(timezone.utc):{_MINUTE}}"
        head = f"{VERSION}-{self.installation_id}-net-{stamp}-{secrets.token_hex(2)}"
        listed = ".".join(f"{card}{_SIDE_LETTER[side]}{qty}" for card, side, qty in shares)
        whole = f"{head}-{listed}"
        return whole if len(whole) <= MAX_ID_LENGTH else f"{head}-x"

    def parse_net(self, client_order_id: str) -> NetIdentity | None:
        """The identity of a netted order of this installation; None for any other id."""
        match = _NET.fullmatch(client_order_id) if isinstance(client_order_id, str) else None
        if match is None or match["inst"] != self.installation_id:
            return None
        try:
            minute = datetime.strptime(match["minute"], _MINUTE).replace(tzinfo=timezone.utc)
        except ValueError:
            return None
        if match["shares"] == "x":
            return NetIdentity(minute, None)
        shares = []
        for item in match["shares"].split("."):
            side = "b" if "b" in item else "s"
            card, qty = item.split(side)
            shares.append((int(card), "buy" if side == "b" else "sell", int(qty)))
        return NetIdentity(minute, tuple(shares))

    def is_net(self, client_order_id: str) -> bool:
        """Whether the id is a netted order of this installation."""
        return self.parse_net(client_order_id) is not None

    def legacy(self, card: int, minute: datetime, side: str) -> str | None:
        """The id the earlier scheme gave the same decision (None if this system.db never used it)."""
        if self._legacy is None:
            return None
        return f"at{self._legacy}-{card}-{minute.astimezone(timezone.utc):{_MINUTE}}-{side}"

    def parse(self, client_order_id: str) -> OrderIdentity | None:
        """The identity of an order of this installation; None for anyone else's (or a malformed) id."""
        if not isinstance(client_order_id, str):
            return None
        match = _CURRENT.fullmatch(client_order_id)
        legacy = False
        if match is None or match["inst"] != self.installation_id:
            match = _LEGACY.fullmatch(client_order_id) if self._legacy else None
            if match is None or match["inst"] != self._legacy:
                return None
            legacy = True
        try:
            minute = datetime.strptime(match["minute"], _MINUTE).replace(tzinfo=timezone.utc)
        except ValueError:
            return None
        return OrderIdentity(int(match["card"]), minute, match["side"], legacy)
