"""Settings a user can get wrong: every one is refused when the command starts, in one line that
names the variable, before anything is read, claimed or sent."""

from __future__ import annotations

import json

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError


@pytest.mark.parametrize(
    "variable, value",
    [
        ("NEWSLETTER_SMTP_RETRY_DELAY", "inf"),
        ("NEWSLETTER_SMTP_RETRY_DELAY", "-1"),
        ("NEWSLETTER_SMTP_TIMEOUT", "nan"),
        ("NEWSLETTER_SMTP_TIMEOUT", "0"),
        ("NEWSLETTER_RATE_LIMIT", "-inf"),
        ("NEWSLETTER_RATE_LIMIT", "1e400"),
        ("NEWSLETTER_FETCH_TIMEOUT", "infinity"),
        ("NEWSLETTER_FETCH_RETRY_DELAY", "NaN"),
        ("NEWSLETTER_CLAIM_LEASE", "nan"),
        ("NEWSLETTER_CLAIM_LEASE", "0.5"),
        ("NEWSLETTER_SMTP_PORT", "70000"),
        ("NEWSLETTER_SMTP_PORT", "25.0"),
        ("NEWSLETTER_WORKERS", "-1"),
        ("NEWSLETTER_SMTP_VERIFY", "maybe"),
    ],
)
def test_a_number_out_of_its_range_is_refused_in_one_line(cli, env, variable, value):
    with pytest.raises(ConfigError, match=rf"^{variable}="):
        load_settings({**env, variable: value})
    result = cli("status", extra_env={variable: value})
    assert result.code != 0
    (line,) = result.stderr.strip().splitlines()
    assert variable in line and "Traceback" not in result.stderr


def test_a_database_whose_driver_is_not_installed_is_one_line(cli):
    result = cli("status", extra_env={"NEWSLETTER_DATABASE_URL": "mysql://u:secret@db.example/x"})
    assert result.code != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: database mysql://u:***@db.example/x: ")
    assert "driver is not installed" in line and "secret" not in line


def test_a_dkim_key_file_that_is_not_a_key_stops_the_run_before_anything(cli, demo, tmp_path):
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN NOTHING-----\nhello\n-----END NOTHING-----\n")
    dkim = {
        "NEWSLETTER_DKIM_SELECTOR": "s1",
        "NEWSLETTER_DKIM_DOMAIN": "digest.example",
        "NEWSLETTER_DKIM_KEY_FILE": str(key),
    }
    result = cli("run", "--dry-run", "--date", "2026-03-11", extra_env=dkim)
    assert result.code != 0
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: NEWSLETTER_DKIM_KEY_FILE={key}: not a PEM RSA private key"
    status = json.loads(cli("status", "--json").stdout)
    assert status["runs"] == []  # no run was started, so none is left "crashed"
    assert not (demo / "outbox" / "2026-03-11").exists()
