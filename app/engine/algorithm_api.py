"""The public algorithm API: the only module an ``algorithms/<type>.py`` file imports.

An algorithm file defines ``class Algorithm(AlgorithmBase)`` with a ``run(current_time, algo_id)``
method returning ``(action, shares)``. Market data and the card's own transactions reach it
through methods the framework injects (``bind``), never through storage imports, so the same
file runs live, in sim and in a backtest, and never sees a bar that had not closed by
``current_time``.
"""

from __future__ import annotations

import difflib
import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from numbers import Integral, Real
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

from app.engine.portfolio.money import CardFigures, card_figures, to_decimal, whole_shares
from app.storage.records import Bar
from app.storage.timefmt import from_epoch, parse_utc_text, to_epoch
from app.engine.marketdata.minutes import floor_ts

__all__ = [
    "ACTIONS", "INTERFACE_VERSION", "AlgorithmBase", "AlgorithmContext", "AlgorithmError",
    "AlgorithmParamError", "Bar", "Param", "from_epoch", "parse_utc_text", "to_epoch",
]

INTERFACE_VERSION = 1
ACTIONS = ("buy", "sell", "hold")
_PARAM_TYPES = (int, float, bool, str)
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class AlgorithmError(RuntimeError):
    """An algorithm used the framework wrongly (e.g. asked for data before ``bind``)."""


class AlgorithmParamError(ValueError):
    """A parameter value (or name) an algorithm does not accept. The message is a human sentence."""


@dataclass(frozen=True)
class Param:
    """One typed algorithm parameter. Its name is its key in ``AlgorithmBase.parameters``.

    ``type`` defaults to the type of ``default``. ``min``/``max`` are inclusive bounds for
    numbers; ``choices`` restricts the value to a fixed set.
    """

    default: Any
    type: type | None = None
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None

    def __post_init__(self) -> None:
        kind = type(self.default) if self.type is None else self.type
        if kind not in _PARAM_TYPES:
            raise TypeError(f"Param type must be int, float, bool or str, not {getattr(kind, '__name__', kind)}")
        object.__setattr__(self, "type", kind)
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        # A default that breaks its own rules is an author mistake: report it at load time.
        self.coerce(self.default, "default")

    def coerce(self, value: Any, name: str = "value") -> Any:
        """``value`` converted to this parameter's type and checked against its bounds.

        Strings as typed on the command line (``"20"``, ``"0.5"``, ``"true"``) are accepted.
        Raises ``AlgorithmParamError`` naming ``name`` and the offending value.
        """
        result = self._convert(value, name)
        if self.choices is not None and result not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            raise AlgorithmParamError(f"parameter '{name}' must be one of {options}; got {value!r}")
        if self.min is not None and result < self.min:
            raise AlgorithmParamError(f"parameter '{name}' must be at least {self.min}; got {value!r}")
        if self.max is not None and result > self.max:
            raise AlgorithmParamError(f"parameter '{name}' must be at most {self.max}; got {value!r}")
        return result

    def _convert(self, value: Any, name: str) -> Any:
        kind = self.type
        text = value.strip() if isinstance(value, str) else None
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, Integral) and value in (0, 1):
                return bool(value)
            if text is not None and text.lower() in _TRUE_WORDS | _FALSE_WORDS:
                return text.lower() in _TRUE_WORDS
            raise AlgorithmParamError(f"parameter '{name}' must be true or false; got {value!r}")
        if kind is str:
            if text is None:
                raise AlgorithmParamError(f"parameter '{name}' must be text; got {value!r}")
            return value
        if isinstance(value, bool):
            raise AlgorithmParamError(f"parameter '{name}' must be a number, not {value!r}")
        if kind is int:
            if isinstance(value, Integral):
                return int(value)
            if isinstance(value, (Real, Decimal)) and math.isfinite(value) and float(value).is_integer():
                return int(value) if isinstance(value, Decimal) else int(float(value))
            if text is not None:
                try:
                    return int(text)
                except ValueError:
                    pass
            raise AlgorithmParamError(f"parameter '{name}' must be a whole number; got {value!r}")
        # float
        number: float | None = None
        if isinstance(value, (Real, Decimal)):
            number = float(value)
        elif text is not None:
            try:
                number = float(text)
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise AlgorithmParamError(f"parameter '{name}' must be a finite number; got {value!r}")
        return number


class AlgorithmContext(Protocol):
    """What the framework provides to algorithms: bars and the card's transactions.

    Implemented over the real stores by the engine, over lists in tests and backtests.
    """

    def last_bars(self, symbol: str, n: int, before_ts: int) -> list[Bar]:
        """The last ``n`` bars with ``ts < before_ts`` (epoch seconds), oldest first."""
        ...

    def bars_between(self, symbol: str, start_ts: int, end_ts: int) -> list[Bar]:
        """Bars with ``start_ts <= ts <= end_ts``, oldest first. Never called with start > end."""
        ...

    def transactions(self, algo_id: int) -> Sequence[Any]:
        """All fills of card ``algo_id``, oldest first; each has ``.type .shares .price .timestamp``."""
        ...

    # Optional: ``holding(algo_id)`` returning an object with ``.figures(capital, price)`` (the
    # engine's CardLedger). With it, position() and uninvested_cash() need not re-sum every fill.


def _wrap_run(run: Any) -> Any:
    """Wrap a subclass's ``run`` so every call first fixes the time the data methods may see."""

    @functools.wraps(run)
    def run_at(self: AlgorithmBase, current_time: datetime, algo_id: int) -> Any:
        self._enter_run(current_time, algo_id)
        return run(self, current_time, algo_id)

    run_at._autotrader_wrapped = True  # type: ignore[attr-defined]
    return run_at


def unwrapped_run(algo: AlgorithmBase) -> Callable[[AlgorithmBase, datetime, int], Any]:
    """``run`` of ``algo``'s class without the per-call wrapper (``_wrap_run``), called as ``f(algo, t, id)``.

    For a driver that walks whole minutes itself (the backtest replay): before every call it must
    do what the wrapper does, ``algo._now_ts = floor_ts(to_epoch(t))``, and ``algo._tx_cache = None``
    at least whenever the card's fills changed, with ``algo._algo_id`` set once. A ``run`` the base
    class did not wrap is returned bound-through.
    """
    run = type(algo).run
    inner = getattr(run, "__wrapped__", None) if getattr(run, "_autotrader_wrapped", False) else None
    if inner is not None:
        return inner
    return lambda self, current_time, algo_id: self.run(current_time, algo_id)


class AlgorithmBase(ABC):
    """Base class of every ``Algorithm``. Subclasses set ``name``, ``description``, ``parameters``
    and implement ``run``.

    ``run(current_time, algo_id)`` returns ``('buy', n)``, ``('sell', n)`` or ``('hold', 0)``.
    Instances should be stateless between runs: derive everything from bars and transactions,
    so a restart changes nothing.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # A short card title filled in with the card's parameters, e.g. "SMA {fast}/{slow}" (plain
    # ``{name}`` or ``{name:g}`` fields only); without one the card shows ``name``.
    label: ClassVar[str] = ""
    parameters: ClassVar[Mapping[str, Param]] = {}
    interface_version: ClassVar[int] = INTERFACE_VERSION
    algorithm_type: ClassVar[str] = ""  # the file stem; set by the loader

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and callable(run) and not getattr(run, "_autotrader_wrapped", False) \
                and not getattr(run, "__isabstractmethod__", False):
            cls.run = _wrap_run(run)  # type: ignore[method-assign]

    def __init__(self, ticker: str, initial_capital: float | Decimal, **params: Any) -> None:
        if not isinstance(ticker, str) or not ticker.strip():
            raise AlgorithmParamError(f"ticker must be a non-empty symbol; got {ticker!r}")
        try:
            capital = to_decimal(initial_capital, "initial capital")
        except (TypeError, ValueError) as exc:
            raise AlgorithmParamError(str(exc)) from None
        if capital <= 0:
            raise AlgorithmParamError(f"initial capital must be positive; got {initial_capital!r}")
        self.ticker = ticker
        self.initial_capital = float(capital)  # as given, for display; money maths uses self.capital
        self._capital = capital
        self.params: dict[str, Any] = self._resolve_params(params)
        self._context: AlgorithmContext | None = None
        self._now_ts: int | None = None
        self._algo_id: int | None = None
        self._tx_cache: Sequence[Any] | None = None
        try:
            self.check_params()
        except AlgorithmParamError:
            raise
        except ValueError as exc:
            raise AlgorithmParamError(str(exc)) from None

    @property
    def capital(self) -> Decimal:
        """The card's initial capital as a Decimal (money maths never goes through float)."""
        return self._capital

    @classmethod
    def _type_label(cls) -> str:
        if cls.algorithm_type:
            return cls.algorithm_type
        module = cls.__module__.rsplit(".", 1)[-1]
        return module if module not in ("__main__", "") else cls.__name__

    def _resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        spec = type(self).parameters
        for key in given:
            if key not in spec:
                hint = difflib.get_close_matches(key, list(spec), n=1)
                suffix = f"; did you mean '{hint[0]}'?" if hint else (
                    f"; it takes {', '.join(spec)}" if spec else "; it takes no parameters")
                raise AlgorithmParamError(f"unknown parameter '{key}' for {self._type_label()}{suffix}")
        return {key: p.coerce(given[key], key) if key in given else p.default for key, p in spec.items()}

    def check_params(self) -> None:  # noqa: B027 - an optional hook: the base accepts every parameter
        """Hook for rules across parameters (e.g. fast < slow). Raise ``AlgorithmParamError``."""

    @abstractmethod
    def run(self, current_time: datetime, algo_id: int) -> tuple[str, int]:
        """Decide for the minute ``current_time`` (aware UTC): ``(action, shares)``."""

    # --- framework side ---------------------------------------------------------------

    def bind(self, context: AlgorithmContext) -> None:
        """Attach the data source. Called once by the framework before the first run."""
        self._context = context

    def _enter_run(self, current_time: datetime, algo_id: int) -> None:
        # Bars are visible only once closed: a bar's ts is its opening minute, so cut at the
        # start of current_time's minute (identical to "ts < current_time" on minute marks).
        self._now_ts = floor_ts(to_epoch(current_time))
        self._algo_id = algo_id
        self._tx_cache = None

    def _require_context(self) -> AlgorithmContext:
        if self._context is None:
            raise AlgorithmError("algorithm is not bound to a data context: the framework calls bind() first")
        return self._context

    def _cutoff(self, current_time: datetime | None) -> int:
        if current_time is not None:
            asked = floor_ts(to_epoch(current_time))
            return asked if self._now_ts is None else min(asked, self._now_ts)
        if self._now_ts is None:
            raise AlgorithmError("no current time: call data methods from run() or pass current_time")
        return self._now_ts

    # --- data access for algorithms ---------------------------------------------------

    def bars_before(self, n: int, current_time: datetime | None = None) -> list[Bar]:
        """The last ``n`` closed bars before ``current_time`` (default: the run's time), oldest first.

        A later ``current_time`` than the run's is clipped: an algorithm never sees the future.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise AlgorithmError(f"bars_before needs a whole number n >= 0; got {n!r}")
        if n == 0:
            return []
        return self._require_context().last_bars(self.ticker, n, self._cutoff(current_time))

    def closes_before(self, n: int, current_time: datetime | None = None) -> list[float]:
        """The closes of ``bars_before(n, current_time)``, oldest first: what most indicators read.

        A backtest serves these from a column of closes, without touching a bar object per price.
        """
        return [bar.close for bar in self.bars_before(n, current_time)]

    def bars_between(self, start: datetime, end: datetime) -> list[Bar]:
        """Bars with ``start <= ts <= end``, oldest first, never past the run's current time."""
        start_ts = to_epoch(start)
        end_ts = min(to_epoch(end), self._cutoff(None) - 1)
        if end_ts < start_ts:
            return []
        return self._require_context().bars_between(self.ticker, start_ts, end_ts)

    def transactions(self) -> Sequence[Any]:
        """This card's fills, oldest first, each with ``.type .shares .price .timestamp``.

        A read-only sequence (index, slice, ``len``, iterate, ``reversed``): a long history is read
        a page at a time as it is walked, so asking for the last fill costs the same after years.
        """
        if self._tx_cache is None:
            if self._algo_id is None:
                raise AlgorithmError("no algo_id yet: call transactions() from run()")
            fills = self._require_context().transactions(self._algo_id)
            # A context's own list is copied once per run, so an algorithm changing it changes nothing.
            self._tx_cache = tuple(fills) if isinstance(fills, list) else fills
        return self._tx_cache

    def _figures(self) -> CardFigures:
        context = self._require_context()
        holding = getattr(context, "holding", None)
        if holding is None or self._algo_id is None:
            return card_figures(self._capital, self.transactions(), None)
        return holding(self._algo_id).figures(self._capital, None)

    def position(self) -> int:
        """Shares this card holds: Σ buy − Σ sell."""
        return self._figures().shares

    def uninvested_cash(self) -> Decimal:
        """This card's cash not in stock: capital − (Σ buy cost − Σ sell proceeds)."""
        return self._figures().uninvested

    def last_price(self) -> float | None:
        """Close of the last closed bar before the current time, or None without data."""
        bars = self.bars_before(1)
        return bars[-1].close if bars else None

    def affordable_shares(self, price: float | Decimal | None, cash: Decimal | float | None = None) -> int:
        """Whole shares ``cash`` (default: uninvested cash) buys at ``price``; 0 without a price."""
        if price is None or price <= 0:
            return 0
        budget = self.uninvested_cash() if cash is None else to_decimal(cash, "cash")
        return whole_shares(budget, to_decimal(price, "price"))
