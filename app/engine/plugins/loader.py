"""Find and load algorithm files: one ``<algorithm_type>.py`` per type, loaded by file path.

Each file is executed under a private module name (``autotrader_algorithms.<stem>``) without
touching ``sys.path``; only a ``class Algorithm`` defined in that very file counts. Files that
fail to load are listed with a short error, never hidden and never raised from ``discover``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import string
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from app.engine.algorithm_api import INTERFACE_VERSION, AlgorithmBase, AlgorithmContext, AlgorithmParamError, Param

MODULE_PREFIX = "autotrader_algorithms."


class AlgorithmLoadError(Exception):
    """An algorithm type that cannot be loaded or created; the message says why."""


@dataclass(frozen=True)
class AlgorithmInfo:
    """One algorithm file as found on disk: its type (file stem), what it says about itself, or why it failed."""

    algorithm_type: str
    name: str
    description: str
    parameters: Mapping[str, Param]
    path: Path
    error: str | None = None
    label: str = ""  # the class's card title template, e.g. "SMA {fast}/{slow}"

    @property
    def ok(self) -> bool:
        """True when the file loaded and defines a usable ``Algorithm``."""
        return self.error is None

    def resolved_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` over the defaults, in the order the algorithm declares them (unknown keys dropped)."""
        return {key: given.get(key, p.default) for key, p in self.parameters.items()}

    def card_label(self, given: Mapping[str, Any]) -> str:
        """The short card title for these parameters ("SMA 20/50"); the algorithm's name when it has no
        template or the template does not fit the parameters."""
        template = self.label
        if not template:
            return self.name
        params = self.resolved_params(given)
        try:
            fields = [f for _text, f, _spec, _conv in string.Formatter().parse(template) if f is not None]
            if any(f not in params for f in fields):  # no attribute or index lookups, only names
                return self.name
            text = template.format_map(params)
        except (ValueError, TypeError, KeyError):
            return self.name
        return text[:40] or self.name

    def params_text(self, given: Mapping[str, Any]) -> str:
        """The parameters in words, compact: ``fast 20 · slow 50``."""
        return " · ".join(f"{key} {_compact(value)}" for key, value in self.resolved_params(given).items())


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class _Loaded:
    info: AlgorithmInfo
    cls: type[AlgorithmBase] | None


CATALOGUE_TIME_LIMIT_S = 5.0  # per file, while the catalogue executes it in a worker

_cache: dict[tuple[Path, int, int], _Loaded] = {}
_catalogue: dict[tuple[Path, int, int], AlgorithmInfo] = {}  # what workers reported, per file version
_lock = threading.Lock()


def default_dirs(extra: Sequence[Path | str] = ()) -> list[Path]:
    """The built-in ``algorithms/`` package folder first, then ``extra`` folders from settings."""
    import algorithms

    return [Path(algorithms.__file__).resolve().parent, *(Path(d) for d in extra)]


def _candidates(dirs: Sequence[Path | str]) -> dict[str, Path]:
    """Stem -> file, earlier dirs winning on duplicate stems."""
    found: dict[str, Path] = {}
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_") or not path.is_file():
                continue
            found.setdefault(path.stem, path.resolve())
    return found


def _error_line(exc: BaseException, path: Path) -> str:
    """``" (line N)"`` for the innermost traceback frame inside ``path``, or ``""``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    return f" (line {line})" if line else ""


def _describe_exception(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError) and Path(exc.filename or "") == path:
        return f"{type(exc).__name__} line {exc.lineno}: {exc.msg}"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return f"{text}{_error_line(exc, path)}"


def _check_class(module: Any, module_name: str) -> tuple[type[AlgorithmBase] | None, str | None]:
    cls = getattr(module, "Algorithm", None)
    if cls is None:
        return None, "no class named Algorithm in this file"
    if not inspect.isclass(cls):
        return None, "Algorithm is not a class"
    if cls.__module__ != module_name:
        return None, f"class Algorithm is imported from {cls.__module__}, not defined in this file"
    if not issubclass(cls, AlgorithmBase):
        return None, "class Algorithm must subclass AlgorithmBase (from app.engine.algorithm_api)"
    version = getattr(cls, "interface_version", None)
    if version != INTERFACE_VERSION:
        return None, f"written for algorithm interface {version!r}; this AutoTrader provides {INTERFACE_VERSION}"
    if inspect.isabstract(cls):
        return None, "class Algorithm does not implement run(current_time, algo_id)"
    params = getattr(cls, "parameters", None)
    if not isinstance(params, Mapping) or not all(
            isinstance(k, str) and k.isidentifier() and isinstance(v, Param) for k, v in params.items()):
        return None, "parameters must map identifier names to Param(...) values"
    return cls, None


def _module_name(stem: str, path: Path) -> str:
    """``autotrader_algorithms.<stem>``, made unique when another folder's file of the same stem holds it."""
    name = MODULE_PREFIX + stem
    holder = sys.modules.get(name)
    if holder is None or Path(getattr(holder, "__file__", "") or "") == path:
        return name
    return f"{name}__{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def _load_file(stem: str, path: Path) -> _Loaded:
    def failed(reason: str) -> _Loaded:
        return _Loaded(AlgorithmInfo(stem, stem, "", {}, path, reason), None)

    if not stem.isidentifier():
        return failed(f"file name '{stem}' is not a valid algorithm type (use letters, digits and _)")
    module_name = _module_name(stem, path)
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            return failed("cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        # Registered so dataclasses, pickling and typing inside the file can find their module.
        previous = sys.modules.get(module_name)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            if previous is None:
                sys.modules.pop(module_name, None)
            else:
                sys.modules[module_name] = previous
            raise
    except (Exception, SystemExit) as exc:
        return failed(_describe_exception(exc, path))
    cls, reason = _check_class(module, module_name)
    if cls is None:
        return failed(reason or "unusable")
    cls.algorithm_type = stem
    name = str(cls.name or stem.replace("_", " ").title())
    description = str(cls.description or "").strip().splitlines()[0] if str(cls.description or "").strip() else ""
    label = getattr(cls, "label", "")
    info = AlgorithmInfo(stem, name, description, MappingProxyType(dict(cls.parameters)), path, None,
                         label=label if isinstance(label, str) else "")
    return _Loaded(info, cls)


def _load_cached(stem: str, path: Path) -> _Loaded:
    try:
        stat = path.stat()
    except OSError as exc:
        return _Loaded(AlgorithmInfo(stem, stem, "", {}, path, f"cannot read file: {exc.strerror}"), None)
    key = (path, stat.st_mtime_ns, stat.st_size)
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            for old in [k for k in _cache if k[0] == path]:
                del _cache[old]
            hit = _cache[key] = _load_file(stem, path)
    return hit


def discover(dirs: Sequence[Path | str] | None = None, *, time_limit_s: float = CATALOGUE_TIME_LIMIT_S
             ) -> list[AlgorithmInfo]:
    """Every algorithm file in ``dirs`` (default ``default_dirs()``), sorted by type, failures included.

    The files are executed in a worker process, one at a time under ``time_limit_s`` each: a file
    that hangs, exits its process or eats memory while importing is listed as broken with the
    reason, and this process never runs its code. Files whose names start with ``_`` are skipped;
    on a duplicate stem the earlier folder wins. Unchanged files (same mtime and size) are not
    executed again.
    """
    from app.engine.plugins.pool import load_catalogue  # the pool imports this module

    found = sorted(_candidates(default_dirs() if dirs is None else dirs).items())
    infos: dict[str, AlgorithmInfo] = {}
    missing: list[tuple[str, Path]] = []
    for stem, path in found:
        key = _file_key(path)
        with _lock:
            hit = _catalogue.get(key) if key is not None else None
        if hit is not None:
            infos[stem] = hit
        elif key is None:
            infos[stem] = AlgorithmInfo(stem, stem, "", {}, path, "cannot read file")
        else:
            missing.append((stem, path))
    for (stem, path), info in zip(missing, load_catalogue(missing, time_limit_s)):
        infos[stem] = info
        key = _file_key(path)
        if key is not None:
            with _lock:
                for old in [k for k in _catalogue if k[0] == path]:
                    del _catalogue[old]
                _catalogue[key] = info
    return [infos[stem] for stem, _ in found]


def _file_key(path: Path) -> tuple[Path, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return path, stat.st_mtime_ns, stat.st_size


def load_file_info(stem: str, path: Path) -> tuple:
    """The fields of ``stem``'s AlgorithmInfo in a form that crosses a process pipe (worker side)."""
    info = _load_cached(stem, path).info
    return (info.algorithm_type, info.name, info.description, dict(info.parameters), str(info.path), info.error,
            info.label)


def info_from_fields(fields: tuple) -> AlgorithmInfo:
    """The AlgorithmInfo a worker described with :func:`load_file_info`."""
    stem, name, description, parameters, path, error, label = fields
    return AlgorithmInfo(stem, name, description, MappingProxyType(dict(parameters)), Path(path), error,
                         label=label)


def load_algorithm_class(algorithm_type: str, dirs: Sequence[Path | str] | None = None) -> type[AlgorithmBase]:
    """The ``Algorithm`` class of ``algorithm_type``; ``AlgorithmLoadError`` says why not."""
    if not isinstance(algorithm_type, str) or not algorithm_type.isidentifier():
        # Types are file stems looked up in the configured folders, never paths: '../x' or '/tmp/x'
        # must not reach the file system.
        raise AlgorithmLoadError(
            f"invalid algorithm type {repr(algorithm_type)[:60]}: use the name of an algorithm file in the "
            "algorithm folders (letters, digits and _, no path)")
    found = _candidates(default_dirs() if dirs is None else dirs)
    path = found.get(algorithm_type)
    if path is None:
        hint = difflib.get_close_matches(algorithm_type, list(found), n=1)
        suffix = f"; did you mean '{hint[0]}'?" if hint else ""
        raise AlgorithmLoadError(f"unknown algorithm type '{algorithm_type}'{suffix}")
    loaded = _load_cached(algorithm_type, path)
    if loaded.cls is None:
        raise AlgorithmLoadError(f"algorithm '{algorithm_type}' ({path.name}) cannot be loaded: {loaded.info.error}")
    return loaded.cls


def create_algorithm(algorithm_type: str, ticker: str, capital: Any, params: Mapping[str, Any] | None = None,
                     dirs: Sequence[Path | str] | None = None, *,
                     context: AlgorithmContext | None = None) -> AlgorithmBase:
    """A new ``Algorithm`` instance, bound to ``context`` if given.

    Bad parameters raise ``AlgorithmParamError`` (a ValueError); anything else the class's
    constructor raises becomes ``AlgorithmLoadError``.
    """
    cls = load_algorithm_class(algorithm_type, dirs)
    try:
        algo = cls(ticker, capital, **dict(params or {}))
    except AlgorithmParamError:
        raise
    except Exception as exc:
        raise AlgorithmLoadError(
            f"algorithm '{algorithm_type}' failed to start: {type(exc).__name__}: {exc}") from exc
    if context is not None:
        algo.bind(context)
    return algo


def clear_cache() -> None:
    """Forget loaded files so the next scan executes them again (tests, manual reload)."""
    with _lock:
        _cache.clear()
        _catalogue.clear()
