"""Settings loading and validation, with real .env files in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

from app.engine.system.settings import Settings, SettingsError, load_settings

KEY = "PKTESTKEY1234567890"
SECRET = "sEcReT-abcdefghijklmnopqrstuvwxyz"


def load(env: dict[str, str], files: list[Path] | None = None, **kwargs) -> Settings:
    return load_settings(env, dotenv_files=files or [], **kwargs)


def test_defaults_without_anything_is_sim() -> None:
    settings = load({})
    assert settings.api_key is None and settings.secret is None
    assert settings.mode == "sim"
    assert settings.paper is True
    assert settings.feed == "iex"
    assert settings.data_root == Path(platformdirs.user_data_dir("autotrader"))
    assert settings.trading_url is None and settings.data_url is None and settings.stream_url is None
    assert settings.algorithm_dirs == ()
    assert settings.sim_forced is False


def test_keys_default_to_paper() -> None:
    settings = load({"ALPACA_API_KEY": KEY, "ALPACA_SECRET": SECRET})
    assert settings.mode == "paper"
    assert settings.api_key == KEY and settings.secret == SECRET


@pytest.mark.parametrize("word", ["false", "FALSE", "0", "no", "off", " False "])
def test_live_only_with_explicit_false(word: str) -> None:
    settings = load({"ALPACA_API_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_PAPER": word})
    assert settings.mode == "live"


@pytest.mark.parametrize("word", ["true", "1", "yes", "on", ""])
def test_paper_for_true_words_and_blank(word: str) -> None:
    settings = load({"ALPACA_API_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_PAPER": word})
    assert settings.mode == "paper"


def test_malformed_paper_flag() -> None:
    with pytest.raises(SettingsError, match=r"^ALPACA_PAPER must be true or false \(got 'maybe'\)$"):
        load({"ALPACA_PAPER": "maybe"})


def test_feed_validation() -> None:
    assert load({"ALPACA_FEED": "SIP"}).feed == "sip"
    with pytest.raises(SettingsError, match=r"^ALPACA_FEED must be 'iex' or 'sip' \(got 'xyz'\)$"):
        load({"ALPACA_FEED": "xyz"})
    with pytest.raises(SettingsError, match="ALPACA_FEED"):
        Settings(feed="otc")


def test_url_validation() -> None:
    settings = load(
        {
            "ALPACA_TRADING_URL": "http://127.0.0.1:8123/",
            "ALPACA_DATA_URL": "https://data.example.test",
            "ALPACA_STREAM_URL": "ws://127.0.0.1:8124/v2/iex",
        }
    )
    assert settings.trading_url == "http://127.0.0.1:8123"
    assert settings.data_url == "https://data.example.test"
    assert settings.stream_url == "ws://127.0.0.1:8124/v2/iex"
    with pytest.raises(SettingsError, match=r"^ALPACA_TRADING_URL must be a URL starting with http:// or https://"):
        load({"ALPACA_TRADING_URL": "127.0.0.1:8123"})
    with pytest.raises(SettingsError, match=r"^ALPACA_DATA_URL must be"):
        load({"ALPACA_DATA_URL": "ws://127.0.0.1:1"})
    with pytest.raises(SettingsError, match=r"^ALPACA_STREAM_URL must be a URL starting with ws:// or wss://"):
        load({"ALPACA_STREAM_URL": "http://127.0.0.1:8124"})


@pytest.mark.parametrize(("present", "missing"),
                         [("ALPACA_API_KEY", "ALPACA_SECRET"), ("ALPACA_SECRET", "ALPACA_API_KEY")])
def test_only_one_key_names_the_missing_one_without_echoing(present: str, missing: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        load({present: SECRET})
    message = str(excinfo.value)
    assert message.startswith(f"{missing} is not set")
    assert SECRET not in message
    assert "\n" not in message


def test_precedence_env_over_cwd_dotenv_over_config_dotenv(tmp_path: Path) -> None:
    cwd_env = tmp_path / "cwd.env"
    config_env = tmp_path / "config.env"
    cwd_env.write_text("ALPACA_FEED=sip\nALPACA_API_KEY=fromfile\nALPACA_SECRET=filesecret\n")
    config_env.write_text(
        "ALPACA_FEED=iex\nALPACA_PAPER=false\nAUTOTRADER_DATA_DIR=" + str(tmp_path / "cfgdata") + "\n"
    )
    files = [cwd_env, config_env]

    from_files = load({}, files)
    assert from_files.feed == "sip"  # cwd .env beats the config-folder .env
    assert from_files.mode == "live"  # only the config .env says so
    assert from_files.data_root == tmp_path / "cfgdata"
    assert from_files.api_key == "fromfile"

    overridden = load({"ALPACA_FEED": "iex", "ALPACA_API_KEY": KEY, "ALPACA_PAPER": "true"}, files)
    assert overridden.feed == "iex"
    assert overridden.api_key == KEY
    assert overridden.secret == "filesecret"
    assert overridden.mode == "paper"


def test_missing_dotenv_files_are_ignored(tmp_path: Path) -> None:
    assert load({}, [tmp_path / "nope.env"]).mode == "sim"


def test_default_dotenv_reads_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ALPACA_FEED=sip\n")
    assert load_settings({}).feed == "sip"


def test_repr_and_str_never_show_keys() -> None:
    settings = load({"ALPACA_API_KEY": KEY, "ALPACA_SECRET": SECRET})
    for text in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert KEY not in text
        assert SECRET not in text
        assert "api_key=set" in text and "secret=set" in text
    assert "api_key=unset" in repr(load({}))


def test_data_dir_separation(tmp_path: Path) -> None:
    settings = load({"AUTOTRADER_DATA_DIR": str(tmp_path)})
    assert settings.data_root == tmp_path
    assert settings.data_dir() == tmp_path / "sim"
    dirs = {settings.data_dir(m) for m in ("sim", "paper", "live")}
    assert dirs == {tmp_path / "sim", tmp_path / "paper", tmp_path / "live"}
    assert settings.log_dir == tmp_path / "sim" / "logs"
    live = load({"AUTOTRADER_DATA_DIR": str(tmp_path), "ALPACA_API_KEY": KEY, "ALPACA_SECRET": SECRET,
                 "ALPACA_PAPER": "no"})
    assert live.data_dir() == tmp_path / "live"
    assert live.log_dir == tmp_path / "live" / "logs"
    with pytest.raises(SettingsError, match="mode must be one of"):
        settings.data_dir("backtest")
    assert not (tmp_path / "sim").exists()  # computing a path creates nothing


def test_force_sim_drops_keys() -> None:
    settings = load({"ALPACA_API_KEY": KEY, "ALPACA_SECRET": SECRET, "ALPACA_PAPER": "false"}, force_sim=True)
    assert settings.mode == "sim"
    assert settings.sim_forced
    assert settings.api_key is None and settings.secret is None
    # a half-configured key pair is irrelevant when sim is forced
    assert load({"ALPACA_API_KEY": KEY}, force_sim=True).mode == "sim"


def test_algorithm_dirs_split_on_pathsep(tmp_path: Path) -> None:
    raw = os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")])
    settings = load({"AUTOTRADER_ALGORITHM_DIRS": raw})
    assert settings.algorithm_dirs == (tmp_path / "a", tmp_path / "b")


def test_settings_is_frozen() -> None:
    settings = load({})
    with pytest.raises(AttributeError):
        settings.paper = False  # type: ignore[misc]


def test_blank_values_in_dotenv_count_as_unset(tmp_path: Path) -> None:
    # The shipped .env.example has "ALPACA_API_KEY=" lines: a copy of it must mean sim, not an error.
    env_file = tmp_path / ".env"
    env_file.write_text("ALPACA_API_KEY=\nALPACA_SECRET=\nALPACA_PAPER=true\nALPACA_FEED=iex\n")
    settings = load({}, [env_file])
    assert settings.mode == "sim"
    assert settings.api_key is None


def test_worker_memory_limit_setting() -> None:
    assert load({}).worker_memory_mb == 512
    assert load({"AUTOTRADER_WORKER_MEMORY_MB": " 256 "}).worker_memory_mb == 256
    with pytest.raises(SettingsError, match=r"AUTOTRADER_WORKER_MEMORY_MB must be a whole number of MB \(got '1g'\)"):
        load({"AUTOTRADER_WORKER_MEMORY_MB": "1g"})
    with pytest.raises(SettingsError, match="from 64"):
        load({"AUTOTRADER_WORKER_MEMORY_MB": "10"})


def test_start_timeout_and_evening_check_settings():
    from app.engine.system.settings import SettingsError, load_settings

    settings = load_settings({}, dotenv_files=[])
    assert settings.start_timeout_s == 120 and settings.evening_check is True
    settings = load_settings({"AUTOTRADER_START_TIMEOUT_S": "900", "AUTOTRADER_EVENING_CHECK": "off"}, dotenv_files=[])
    assert settings.start_timeout_s == 900 and settings.evening_check is False
    for bad in ("0", "-5", "soon", "100000"):
        with pytest.raises(SettingsError, match="AUTOTRADER_START_TIMEOUT_S"):
            load_settings({"AUTOTRADER_START_TIMEOUT_S": bad}, dotenv_files=[])
    with pytest.raises(SettingsError, match="AUTOTRADER_EVENING_CHECK"):
        load_settings({"AUTOTRADER_EVENING_CHECK": "maybe"}, dotenv_files=[])
