"""The command line: a bad setting, keys file or database stops the start with one clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_PATH": str(tmp_path / "g.db"), "SERVER_HOST": "127.0.0.1",
                   "SERVER_PORT": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=30)


def good_keys(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"virtual_keys": {"vk_cli_test_1": {"provider": "openai", "api_key": "sk-x"}}}))
    return path


@pytest.mark.parametrize("content, expected", [
    (None, "file not found"),
    ("{not json", "not valid JSON"),
    ('{"virtual_keys": {"vk_one_bad_key": {"provider": "cohere", "api_key": "sk-secret-value"}}}', "must be one of"),
    ('{"virtual_keys": {"vk_one_bad_key": {"provider": "openai"}}}', "exactly one of api_key or api_key_env"),
    ('{"virtual_keys": {"vk_one_bad_key": {"provider": "openai", "api_key_env": "NO_SUCH_VAR_XYZ"}}}', "NO_SUCH_VAR_XYZ"),
])
def test_bad_keys_file_stops_the_start_clearly(tmp_path, content, expected):
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)
    result = run(tmp_path, "--keys", str(path))
    assert result.returncode != 0
    assert result.stderr.strip().startswith("llm-gateway: error:")
    assert str(path) in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "sk-secret-value" not in result.stderr and "vk_one_bad_key" not in result.stderr


@pytest.mark.parametrize("variable, value", [("SERVER_PORT", "eighty"), ("REQUEST_TIMEOUT", "-1"),
                                             ("QUOTA_ENABLED", "maybe"), ("OPENAI_BASE_URL", "ftp://x")])
def test_bad_setting_names_the_variable(tmp_path, variable, value):
    result = run(tmp_path, "--keys", str(good_keys(tmp_path)), env={variable: value})
    assert result.returncode == 2
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_unusable_database_stops_the_start_clearly(tmp_path):
    (tmp_path / "a-directory.db").mkdir()
    result = run(tmp_path, "--keys", str(good_keys(tmp_path)), "--db", str(tmp_path / "a-directory.db"))
    assert result.returncode != 0
    assert "a-directory.db" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_flags(tmp_path):
    result = run(tmp_path, "--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--keys", "--db", "--log-file"):
        assert flag in result.stdout
