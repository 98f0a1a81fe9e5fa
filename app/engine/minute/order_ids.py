"""Client order ids that say whose decision an order was: installation, card, minute and side.

Format ``at2-<installation>-<card>-<YYYYMMDDTHHMM>-<side>``, e.g.
``at2-3f9a0c12d4e5b6a7-42-20261201T1530-buy`` (45 characters for card ids below a million; Alpaca
allows 128). The installation id is 16 random hex digits made once per system.db and stored in
``system_config``: a new system.db is a new installation, a restored backup is the same one. From
an id alone, broker-side reconciliation knows whether an order is ours and which card it books to;
an order placed by hand or by another installation never parses as ours.

Ids of the earlier scheme, ``at<journal_id>-<card>-<YYYYMMDDTHHMM>-<side>`` (``journal_id``: 6 hex
digits per system.db), still parse as ours when that system.db's ``journal_id`` matches.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from app.storage.system_store import SystemStore

INSTALLATION_ID_KEY = "installation_id"
LEGACY_JOURNAL_ID_KEY = "journal_id"
VERSION = "at2"

_MINUTE = "%Y%m%dT%H%M"
_TAIL = r"-(?P<card>[1-9][0-9]{0,17})-(?P<minute>\d{8}T\d{4})-(?P<side>buy|sell)"
_CURRENT = re.compile(r"at2-(?P<inst>[0-9a-f]{16})" + _TAIL)
_LEGACY = re.compile(r"at(?P<inst>[0-9a-f]{6})" + _TAIL)


@dataclass(frozen=True, slots=True)
class OrderIdentity:
    """What a client order id of this installation says about its order."""

    card: int
    minute: datetime  # the decision minute, UTC
    side: str  # 'buy' | 'sell'
    legacy: bool = False  # made by the earlier scheme


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
