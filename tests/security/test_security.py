"""Hostile names, download targets, secrets and model files."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from candlecast.cli import app
from candlecast.core.errors import FetchError, InvalidInputError
from candlecast.core.identifiers import check_exchange, check_symbol, check_timeframe
from candlecast.core.settings import Settings, get_settings
from candlecast.core.urls import check_base_url, public_url
from models import lstm
from tasks.fetch import cdd_url, fetch

ROOT = Path(__file__).parents[2]
HOSTILE = [
    "BTC'; DROP TABLE candles;--",
    "../../etc/passwd",
    "BTC/USDT",
    "ВТСUSDT",
    "BTC USDT",
    "BTC%00",
    "",
    "B" * 40,
    "btc\nusdt",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_symbols_and_exchanges_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid symbol"):
        check_symbol(name)
    with pytest.raises(InvalidInputError, match="invalid exchange"):
        check_exchange(name)


@pytest.mark.parametrize("timeframe", ["1d; rm -rf /", "../d", "D", "5m", ""])
def test_unknown_timeframes_are_refused(timeframe: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid timeframe"):
        check_timeframe(timeframe)


@pytest.mark.parametrize(
    ("base", "cause"),
    [
        ("http://169.254.169.254/latest/meta-data", "link-local or metadata address"),
        ("http://[fe80::1]/cdd", "link-local or metadata address"),
        ("http://metadata.google.internal/computeMetadata", "cloud metadata service"),
        ("http://100.100.100.200/latest", "link-local or metadata address"),
        ("http://www.cryptodatadownload.com/cdd", "over https only"),
        ("ftp://mirror.example/cdd", "scheme 'ftp' refused"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme 'gopher' refused"),
        ("https:///no-host", "has no host"),
    ],
)
def test_forbidden_download_targets_are_refused_even_when_configured(base: str, cause: str) -> None:
    with pytest.raises(InvalidInputError, match=cause):
        check_base_url(base)
    with pytest.raises(InvalidInputError, match=cause):
        cdd_url(base, "Binance", "BTCUSDT", "d")
    with pytest.raises(FetchError, match=f"^BTCUSDT: .*{cause}"):
        fetch(base + "/Binance_BTCUSDT_d.csv", symbol="BTCUSDT", retries=0)


@pytest.mark.parametrize(
    "base",
    [
        "https://www.cryptodatadownload.com/cdd",
        "http://127.0.0.1:8765",
        "https://mirror.example/x",
        "/srv/cdd",
        "file:///srv/cdd",
    ],
)
def test_cdd_and_configured_mirrors_are_allowed(base: str) -> None:
    assert check_base_url(base) == base


def test_credentials_in_a_mirror_url_never_reach_messages() -> None:
    assert public_url("https://user:hunter2@mirror.example:8443/cdd?token=abc") == (
        "https://mirror.example:8443/cdd"
    )


def test_tls_verification_is_never_turned_off() -> None:
    sources = "\n".join(
        p.read_text()
        for d in ("tasks", "db", "candlecast", "flows")
        for p in (ROOT / d).rglob("*.py")
    )
    assert "verify=False" not in sources and "verify=True" in sources


def test_flow_parameters_cannot_choose_the_download_host() -> None:
    from flows.daily import backfill, daily_forecast
    from flows.ingest import ingest

    for flow in (daily_forecast, backfill, ingest):
        names = set(flow.parameters.properties)
        assert not any("url" in n or "base" in n or "host" in n for n in names), names


def test_database_password_never_printed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-pa55"  # noqa: S105 - the point is to see that it never comes back
    url = f"postgresql+psycopg://candlecast:{secret}@127.0.0.1:1/candlecast"
    settings = Settings(database_url=url)
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    monkeypatch.setenv("CANDLECAST_DATABASE_URL", url)
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)
    try:
        results = [
            CliRunner().invoke(app, args)
            for args in (["db", "upgrade"], ["models"], ["forecasts"], ["ingest", "-s", "BTCUSDT"])
        ]
    finally:
        get_settings.cache_clear()
    for result in results:
        assert result.exit_code == 1
        assert secret not in result.output
    assert secret not in caplog.text


def test_no_secret_in_prefect_yaml_or_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    url_with_credentials = r"postgres(ql)?(\+\w+)?://[^/\s:@]+:[^@\s{}]+@"
    quoted_credential = r"password\s*[:=]\s*[\"'][^\"']+[\"']"
    pattern = re.compile(f"({url_with_credentials}|{quoted_credential})", re.I)
    offenders = []
    for name in tracked:
        path = ROOT / name
        if (
            path.suffix in {".py", ".yaml", ".yml", ".toml", ".md", ".cfg", ".ini", ".env", ""}
            and path.is_file()
            and "tests/" not in name
        ):
            if pattern.search(path.read_text(errors="ignore")):
                offenders.append(name)
    assert offenders == []


def _lambda_model_bytes() -> bytes:
    inputs = keras.Input(shape=(3, 1))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(keras.layers.LSTM(2)(inputs))
    model = keras.Model(inputs, outputs)
    return lstm.to_bytes(model)


def test_crafted_keras_file_with_a_lambda_layer_is_refused() -> None:
    data = _lambda_model_bytes()
    assert zipfile.is_zipfile(io.BytesIO(data))
    assert b"Lambda" in zipfile.ZipFile(io.BytesIO(data)).read("config.json")
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        lstm.from_bytes(data)


def test_plain_model_round_trips_in_safe_mode() -> None:
    inputs = keras.Input(shape=(3, 1))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.LSTM(2)(inputs)))
    x = np.ones((2, 3, 1), dtype="float32")
    again = lstm.from_bytes(lstm.to_bytes(model))
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))


def test_no_unsafe_deserialization_anywhere() -> None:
    code = "\n".join(
        p.read_text()
        for d in ("tasks", "db", "candlecast", "flows", "models", "bench")
        for p in (ROOT / d).rglob("*.py")
    )
    # spelled in pieces so that this test is not itself a match for repository-wide scans
    for forbidden in (
        "pickle" + ".load",
        "joblib" + ".load",
        "safe_mode" + "=False",
        ".h5",
        "enable_unsafe" + "_deserialization",
    ):
        assert forbidden not in code, forbidden


def test_database_url_from_a_prefect_secret_block(prefect_harness: None, sqlite_db: str) -> None:
    from prefect.blocks.system import Secret

    block = "candlecast-test-db"
    Secret(value=sqlite_db).save(block, overwrite=True)
    settings = Settings(database_secret_block=block)
    assert settings.sqlalchemy_url() == sqlite_db
    assert sqlite_db not in repr(settings)
