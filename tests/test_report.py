"""What a person reads in the run's artifacts: closes quoted like prices, a table that fits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.outcome import SymbolOutcome
from tasks.report import forecast_table, plots_markdown, price_decimals, summary_markdown


def outcome(persistence: float, predicted: float, **extra: object) -> SymbolOutcome:
    row = {
        "as_of": datetime(2025, 10, 13, tzinfo=UTC),
        "target_time": datetime(2025, 10, 14, tzinfo=UTC),
        "horizon": 1,
        "predicted_close": predicted,
        "persistence_close": persistence,
    }
    fields: dict[str, object] = {
        "exchange": "Binance",
        "symbol": "BTCUSDT",
        "timeframe": "d",
        "as_of": "2025-10-13T00:00:00+00:00",
        "rows": 2981,
        "ingest": {"inserted": 1, "updated": 0},
        "action": "fine_tune",
        "decision": "v2 kept as candidate: it does not beat the champion",
        "version": 2,
        "champion_version": 1,
        "test_mape": 1.804,
        "persistence_mape": 1.873,
        "skill": 0.0368,
        "forecasts": [row],
    }
    return SymbolOutcome(**(fields | extra))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("persistence", "predicted", "shown"),
    [
        (113100.01, 113123.456789123, 113123.46),
        (0.3528, 0.35311234567, 0.3531),
        (245.0, 244.987654321, 244.99),
        (0.00001234, 0.0000123456789, 0.00001235),
    ],
)
def test_a_forecast_is_quoted_with_the_decimals_of_its_price(
    persistence: float, predicted: float, shown: float
) -> None:
    (row,) = forecast_table([outcome(persistence, predicted)])
    assert row["predicted_close"] == shown
    assert price_decimals(persistence) >= 2
    assert row["low95"] is None  # a forecast without bands shows none


def test_a_forecasts_bands_are_quoted_like_its_close() -> None:
    banded = outcome(113100.01, 113123.456789)
    banded.forecasts[0] |= {"low95": 104321.98765, "high95": 122000.004, "low80": None}
    (row,) = forecast_table([banded])
    assert (row["low95"], row["high95"], row["low80"]) == (104321.99, 122000.0, None)


def test_the_summary_table_is_narrow_and_the_rest_follows_per_symbol() -> None:
    text = summary_markdown([outcome(113100.01, 113123.4)], {"ETHUSDT": "ETHUSDT: HTTP 404"})
    header = next(line for line in text.splitlines() if line.startswith("| symbol"))
    rows = [line for line in text.splitlines() if line.startswith("| ") and line != header]
    assert header.count("|") == 9  # eight columns
    assert all(len(cell.strip()) <= 12 for row in rows for cell in row.strip("|").split("|"))
    assert "- candles: 1 new, 0 updated" in text
    assert "- skill against persistence: +0.0368\n" in text  # no p-value stored (older version)
    tested = summary_markdown([outcome(113100.01, 113123.4, skill_p_value=0.6182)], {})
    assert "- skill against persistence: +0.0368 (Diebold-Mariano p = 0.62)" in tested
    assert "- forecasts: 1 (0 new), 0 scored" in text
    assert "served bands" not in text  # nothing served has been scored yet
    served = {"n": 90, "cov80": 78.888, "cov95": 95.555}
    scored = summary_markdown([outcome(113100.01, 113123.4, served=served)], {})
    assert "- served bands, the last 90 days at h=1: the 80% band covered 78.9%, " in scored
    assert "the 95% band 95.6%\n" in scored
    assert "## ETHUSDT\n\nFailed: ETHUSDT: HTTP 404" in text


def test_the_plots_artifact_shows_pictures_and_no_server_paths(tmp_path: Path) -> None:
    picture = tmp_path / "reports" / "BTCUSDT" / "v2" / "history.png"
    picture.parent.mkdir(parents=True)
    picture.write_bytes(b"\x89PNG\r\n\x1a\n")
    text = plots_markdown(outcome(1.0, 1.0, plots=[str(picture)]))
    assert "](data:image/png;base64," in text
    assert str(tmp_path) not in text and "reports/" not in text
