"""What each Alpaca market-data stream error means for the feed, in one sentence a person understands.

Alpaca's "WebSocket Stream" page lists the errors (``{"T": "error", "code": N, "msg": "..."}``).
alpaca-py 0.44 turns an error during login into ``ValueError(msg)`` (the code is lost), logs an
error frame that arrives later and keeps going, and ends the stream by itself only on 409. So a
problem is recognised by its code when the frame is seen, else by Alpaca's message text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Feed states (StreamStatus.state). 'limited': connected, but Alpaca refused some subscriptions.
IDLE, CONNECTING, LIVE, RECONNECTING, LIMITED, FAILED = (
    "idle", "connecting", "live", "reconnecting", "limited", "failed")

REASON_AUTH = ("Alpaca rejected the API key or secret for market data (402 auth failed): "
               "check ALPACA_API_KEY and ALPACA_SECRET")
REASON_AUTH_TIMEOUT = "Alpaca closed the feed before the login finished (404 auth timeout): reconnecting"
REASON_WRONG_URL = "Alpaca has no data stream at that address (HTTP 404): check ALPACA_STREAM_URL"
REASON_SYMBOL_LIMIT = ("Alpaca's market-data plan streams fewer symbols than the {wanted} wanted "
                       "(405 symbol limit exceeded): some cards get no live prices")
REASON_CONNECTION_LIMIT = ("another app is using this Alpaca account's data stream (406 connection limit "
                           "exceeded; the free plan allows one connection): the feed reconnects once it "
                           "is closed")
REASON_SLOW_CLIENT = ("Alpaca dropped the feed because this kiosk read it too slowly (407 slow client): "
                      "reconnecting")
REASON_SUBSCRIPTION = ("the {feed} feed needs a paid Alpaca market-data subscription "
                       "(409 insufficient subscription): set ALPACA_FEED=iex")
REASON_BAD_CHANNEL = "Alpaca refused a subscription this feed does not offer (410)"
REASON_INTERNAL = "Alpaca's data stream had an internal error (500): reconnecting"
REASON_OTHER = "Alpaca reported {msg!r} ({code}): reconnecting"


@dataclass(frozen=True, slots=True)
class StreamProblem:
    """The feed state a stream error leads to, and the sentence shown with it."""

    code: int | None
    state: str
    reason: str


# code: (Alpaca's message, state, sentence)
_TABLE: dict[int, tuple[str, str, str]] = {
    400: ("invalid syntax", RECONNECTING, REASON_OTHER),
    401: ("not authenticated", RECONNECTING, REASON_OTHER),
    402: ("auth failed", FAILED, REASON_AUTH),
    403: ("already authenticated", RECONNECTING, REASON_OTHER),
    404: ("auth timeout", RECONNECTING, REASON_AUTH_TIMEOUT),
    405: ("symbol limit exceeded", LIMITED, REASON_SYMBOL_LIMIT),
    406: ("connection limit exceeded", FAILED, REASON_CONNECTION_LIMIT),
    407: ("slow client", RECONNECTING, REASON_SLOW_CLIENT),
    409: ("insufficient subscription", FAILED, REASON_SUBSCRIPTION),
    410: ("invalid subscribe action for this feed", FAILED, REASON_BAD_CHANNEL),
    500: ("internal error", RECONNECTING, REASON_INTERNAL),
}
# The websocket handshake itself answered 404 (websockets: "server rejected WebSocket connection: HTTP 404").
_HTTP_404 = re.compile(r"\bHTTP 404\b")


def stream_problem(*, code: int | None = None, text: str = "", feed: str = "iex",
                   wanted: int = 0) -> StreamProblem | None:
    """The problem behind an error frame (``code``, ``text``) or an error's text alone; None if unknown.

    ``feed`` and ``wanted`` (symbols wanted) fill in the sentence.
    """
    low = text.lower()
    if code not in _TABLE:
        code = None
        if _HTTP_404.search(text):
            return StreamProblem(404, FAILED, REASON_WRONG_URL)
        # Older wording the SDK uses for a login answer it did not understand.
        if "failed to authenticate" in low or "not authorized" in low:
            code = 402
        for known, (message, _, _) in _TABLE.items():
            if message in low:
                code = known
                break
    if code is None:
        return None
    message, state, sentence = _TABLE[code]
    return StreamProblem(code, state, sentence.format(feed=feed, wanted=wanted, msg=text or message,
                                                      code=code))
