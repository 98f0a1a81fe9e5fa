"""Discovery and loading of algorithm files by path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from app.engine.algorithm_api import AlgorithmBase, AlgorithmParamError
from app.engine.plugins.loader import (
    AlgorithmLoadError, clear_cache, create_algorithm, default_dirs, discover, load_algorithm_class,
)

from .algo_helpers import MemoryContext, make_bars, minute

BROKEN = Path(__file__).parent / "broken_algorithms"
BUILTIN = default_dirs()[0]

SIMPLE = '''
from app.engine.algorithm_api import AlgorithmBase, Param

class Algorithm(AlgorithmBase):
    name = "{name}"
    description = "first line\\nsecond line"
    parameters = {{"size": Param(1, int, min=1)}}

    def run(self, current_time, algo_id):
        return ("hold", 0)
'''


def write_algo(folder: Path, stem: str, name: str) -> Path:
    path = folder / f"{stem}.py"
    path.write_text(SIMPLE.format(name=name))
    return path


def test_builtin_folder_holds_the_shipped_algorithms_without_errors() -> None:
    infos = {i.algorithm_type: i for i in discover()}
    assert {"sma_crossover", "buy_and_hold", "lot_exits"} <= set(infos)
    sma = infos["sma_crossover"]
    assert sma.ok and sma.name == "SMA crossover" and sma.path == BUILTIN / "sma_crossover.py"
    assert {k: p.default for k, p in sma.parameters.items()} == {"fast": 20, "slow": 50}
    assert all(info.ok and info.description for info in infos.values())


def test_broken_files_are_listed_with_a_short_reason() -> None:
    errors = {i.algorithm_type: i.error for i in discover([BROKEN])}
    assert errors["syntax_error"] == "SyntaxError line 3: invalid syntax"
    assert errors["import_error"] == "ModuleNotFoundError: No module named 'autotrader_no_such_module' (line 3)"
    assert errors["no_class"] == "no class named Algorithm in this file"
    assert errors["wrong_base"] == "class Algorithm must subclass AlgorithmBase (from app.engine.algorithm_api)"
    assert errors["wrong_version"] == "written for algorithm interface 99; this AutoTrader provides 1"
    assert errors["imported_class"] == ("class Algorithm is imported from app.engine.algorithm_api, "
                                        "not defined in this file")
    # These load fine: they only misbehave when run.
    for healthy in ("healthy", "raises", "returns_none", "returns_negative", "returns_huge", "sleeps"):
        assert errors[healthy] is None, healthy
    assert "_private_helper" not in errors  # underscore files are never executed


def test_discover_tolerates_missing_folders_and_leaves_sys_path_alone(tmp_path: Path) -> None:
    before = list(sys.path)
    assert discover([tmp_path / "nope", BROKEN])
    assert sys.path == before


def test_earlier_folder_wins_on_a_duplicate_type(tmp_path: Path) -> None:
    write_algo(tmp_path, "sma_crossover", "Impostor")
    first = {i.algorithm_type: i for i in discover([BUILTIN, tmp_path])}["sma_crossover"]
    assert first.name == "SMA crossover"
    override = {i.algorithm_type: i for i in discover([tmp_path, BUILTIN])}["sma_crossover"]
    assert override.name == "Impostor" and override.description == "first line"
    # Both files loaded: each class still points at its own file (tracebacks name the right one).
    builtin_cls = load_algorithm_class("sma_crossover", [BUILTIN])
    impostor_cls = load_algorithm_class("sma_crossover", [tmp_path])
    assert Path(sys.modules[builtin_cls.__module__].__file__) == BUILTIN / "sma_crossover.py"
    assert Path(sys.modules[impostor_cls.__module__].__file__) == tmp_path / "sma_crossover.py"
    assert builtin_cls.algorithm_type == impostor_cls.algorithm_type == "sma_crossover"


def test_an_unchanged_file_is_not_executed_again_but_an_edited_one_is(tmp_path: Path) -> None:
    path = write_algo(tmp_path, "my_algo", "One")
    cls1 = load_algorithm_class("my_algo", [tmp_path])
    assert load_algorithm_class("my_algo", [tmp_path]) is cls1
    path.write_text(SIMPLE.format(name="Two, edited"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    cls2 = load_algorithm_class("my_algo", [tmp_path])
    assert cls2 is not cls1 and cls2.name == "Two, edited"
    clear_cache()
    assert load_algorithm_class("my_algo", [tmp_path]) is not cls2


def test_a_file_name_that_is_not_an_identifier_is_reported(tmp_path: Path) -> None:
    write_algo(tmp_path, "my-algo", "Dash")
    (info,) = discover([tmp_path])
    assert info.algorithm_type == "my-algo" and "not a valid algorithm type" in info.error


def test_load_algorithm_class_explains_failures() -> None:
    with pytest.raises(AlgorithmLoadError, match="unknown algorithm type 'sma_crosover'; did you mean 'sma_crossover'"):
        load_algorithm_class("sma_crosover")
    with pytest.raises(AlgorithmLoadError, match=r"syntax_error.py\) cannot be loaded: SyntaxError line 3"):
        load_algorithm_class("syntax_error", [BROKEN])
    with pytest.raises(AlgorithmLoadError, match="invalid algorithm type"):
        load_algorithm_class("../algorithms/sma_crossover")


def test_create_algorithm_coerces_params_and_binds_the_context() -> None:
    ctx = MemoryContext(make_bars([10.0, 11.0]))
    algo = create_algorithm("sma_crossover", "TEST", 1000, {"fast": "2", "slow": "3"}, context=ctx)
    assert isinstance(algo, AlgorithmBase) and algo.params == {"fast": 2, "slow": 3}
    assert algo.run(minute(2), 1) == ("hold", 0)
    assert algo.last_price() == 11.0
    with pytest.raises(AlgorithmParamError, match="did you mean 'slow'"):
        create_algorithm("sma_crossover", "TEST", 1000, {"slwo": 3})


def test_create_algorithm_wraps_a_crashing_constructor(tmp_path: Path) -> None:
    (tmp_path / "bad_init.py").write_text(
        "from app.engine.algorithm_api import AlgorithmBase\n"
        "class Algorithm(AlgorithmBase):\n"
        "    def __init__(self, ticker, capital, **params):\n"
        "        raise RuntimeError('no config file')\n"
        "    def run(self, current_time, algo_id):\n"
        "        return ('hold', 0)\n")
    with pytest.raises(AlgorithmLoadError, match="'bad_init' failed to start: RuntimeError: no config file"):
        create_algorithm("bad_init", "TEST", 1000, dirs=[tmp_path])
