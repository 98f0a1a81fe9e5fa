"""The bar CSV reader: timestamp forms (the fast path agrees with the full ISO parser) and layouts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from app.engine.marketdata.bar_csv import BarCsvError, iter_rows, parse_timestamp


@pytest.mark.parametrize("text", [
    "2024-06-03T13:30:00Z", "2024-06-03 13:30:00+00:00", "2024-06-03 09:30:00-04:00",
    "2024-01-02 09:30:00-05:00", "2024-06-03T09:30:00+05:30", "2024-06-03T00:30:00+05:30",
    "2024-02-29T23:59:00Z", "2024-06-03T13:30:00.000Z", "2024-06-03T13:30:00.000000+00:00",
    "20240603T133000Z", " 2024-06-03T13:30:00Z ",
])
def test_every_accepted_form_gives_the_instant_the_iso_parser_gives(text: str) -> None:
    assert parse_timestamp(text) == int(datetime.fromisoformat(text.strip()).timestamp())
    assert parse_timestamp(text) == parse_timestamp(text)  # again, from the caches


@pytest.mark.parametrize("text, message", [
    ("2024-06-03 13:30:00", "has no UTC offset"),
    ("2024-06-03", "has no UTC offset"),
    ("2024-06-03T13:30:30Z", "is not a whole minute"),
    ("2024-06-03T13:30:00.5Z", "is not a whole minute"),
    ("2024-13-03T13:30:00Z", "is not an ISO date and time"),
    ("2024-06-03T24:30:00Z", "is not an ISO date and time"),
    ("2024-06-0aT13:30:00Z", "is not an ISO date and time"),
    ("1717421400", "is not an ISO date and time"),
])
def test_ambiguous_or_malformed_timestamps_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_timestamp(text)


def test_headers_are_matched_by_name_in_any_order_and_extra_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("\ufeffVolume,Close,Low,High,Open,Datetime,Adj Close\n5,10.5,9,11,10,2024-06-03T13:30:00Z,10.4\n",
                    encoding="utf-8")
    ((layout, line, (symbol, bar)),) = list(iter_rows(path))
    assert (line, symbol, tuple(bar)) == (2, None, (1717421400, 10.0, 11.0, 9.0, 10.5, 5))
    assert layout.ignored == ("Adj Close",)


@pytest.mark.parametrize("header, message", [
    ("timestamp,open,high,low,close", "missing: volume"),
    ("date,time,open,high,low,close,volume", "names the timestamp column twice"),
    ("", "the file is empty"),
])
def test_a_header_without_the_needed_columns_is_refused(tmp_path: Path, header: str, message: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(header + "\n" if header else "")
    with pytest.raises(BarCsvError, match=message):
        list(iter_rows(path))
