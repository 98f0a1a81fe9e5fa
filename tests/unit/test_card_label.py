"""Card titles a person understands: an algorithm's label template filled with the card's parameters."""

from __future__ import annotations

from pathlib import Path

from app.engine.algorithm_api import Param
from app.engine.plugins.loader import AlgorithmInfo, discover


def _info(label: str) -> AlgorithmInfo:
    params = {"fast": Param(20, int, "fast"), "slow": Param(50, int, "slow"), "pct": Param(2.5, float, "pct")}
    return AlgorithmInfo("x", "SMA crossover", "", params, Path("x.py"), label=label)


def test_template_is_filled_with_the_cards_parameters_over_the_defaults():
    info = _info("SMA {fast}/{slow}")
    assert info.card_label({"fast": 5}) == "SMA 5/50"
    assert info.card_label({}) == "SMA 20/50"
    assert info.params_text({"slow": 200}) == "fast 20 · slow 200 · pct 2.5"


def test_bad_or_missing_templates_fall_back_to_the_name():
    assert _info("").card_label({}) == "SMA crossover"
    assert _info("SMA {nope}").card_label({}) == "SMA crossover"  # not a parameter
    assert _info("{fast.__class__}").card_label({}) == "SMA crossover"  # no attribute lookups
    assert _info("SMA {fast:d}").card_label({"fast": "abc"}) == "SMA crossover"  # format error
    assert _info("SMA {fast").card_label({}) == "SMA crossover"  # malformed


def test_shipped_algorithms_have_short_titles():
    infos = {i.algorithm_type: i for i in discover()}
    assert infos["sma_crossover"].card_label({"fast": "5", "slow": "20"}) == "SMA 5/20"
    assert infos["buy_and_hold"].card_label({}) == "Buy & hold"
    assert infos["lot_exits"].card_label({}) == "Lot exits"
