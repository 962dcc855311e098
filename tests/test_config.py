"""A wrong setting stops start-up with a message naming the file, the key and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ivr.config import load_settings
from ivr.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivr.toml"
    path.write_text(text)
    return path


def test_defaults_are_loopback_and_standard_port() -> None:
    settings = load_settings(None, {})
    assert settings.agi.host == "127.0.0.1" and settings.agi.port == 4573
    assert settings.agi.allowed_peers == ["127.0.0.0/8", "::1/128"]
    assert settings.log.format == "text"


def test_file_then_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[agi]\nport = 5000\nallowed_peers = ["10.0.0.0/8"]\n'
                           '[routing]\nroutes = { sales = "mod:func" }\n')
    settings = load_settings(path, {"IVR_AGI_PORT": "6000", "IVR_LOG_FORMAT": "json",
                                    "IVR_SANDBOX_DIR": "/elsewhere"})
    assert settings.agi.port == 6000
    assert settings.agi.allowed_peers == ["10.0.0.0/8"]
    assert settings.routing.routes == {"sales": "mod:func"}
    assert settings.log.format == "json"


@pytest.mark.parametrize(("text", "key", "words"), [
    ('[agi]\nport = "forty"\n', "agi.port", "an integer"),
    ("[agi]\nport = 70000\n", "agi.port", "0 to 65535"),
    ('[agi]\nallowed_peers = ["everyone"]\n', "agi.allowed_peers", "IP networks"),
    ("[agi]\nprot = 1\n", "agi.prot", "knows"),
    ("[agi]\ncommand_timeout = -1\n", "agi.command_timeout", "greater than 0"),
    ('[routing]\nfallback = "nowhere"\n', "routing.fallback", "context,extension,priority"),
    ('[log]\nformat = "xml"\n', "log.format", "'text', 'json'"),
    ('[sip_sms]\ndestination = "sip:1@h"\n', "sip_sms.destination", "pjsip:sms-trunk"),
    ('[sip_sms]\ndestination = "pjsip:t/sip:{phone}@h"\n', "sip_sms.destination", "{number} and {digits}"),
    ('[sip_sms]\nfrom_uri = "95555"\n', "sip_sms.from_uri", "sip:95555@"),
    ('[sip_sms]\nfrom_uri = "sip:1@h\\r\\nAction: Originate"\n', "sip_sms.from_uri", "no control"),
    ("[sip_sms]\nmax_attempts = 0\n", "sip_sms.max_attempts", "greater than 0"),
    ("[server]\nswitch_interval = 0\n", "server.switch_interval", "0.0005"),
    ("[server]\nswitch_interval = 5\n", "server.switch_interval", "to 0.1"),
    ("[nonsense]\n", "nonsense", "[agi]"),
    ("[agi\n", "(file)", "TOML"),
])
def test_wrong_file_values_name_file_key_and_fix(tmp_path: Path, text: str, key: str,
                                                  words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    message = str(info.value)
    assert str(path) in message and key in message and "Fix:" in message and words in message


def test_wrong_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"IVR_AGI_PORT": "abc"})
    assert "environment variable IVR_AGI_PORT" in str(info.value)
    assert "agi.port" in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings("/nonexistent/ivr.toml", {})


def test_ivr_serve_refuses_to_start_on_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, '[routing]\nroutes = { x = "no_such_module_anywhere:f" }\n')
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "routing.routes.x" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr
