"""bench/forecast_quality.py reads each file's pair from the file itself, refuses a file it
cannot tell the pair of before any training starts, and cuts files at `--until` for a
hold-out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

import bench.forecast_quality as forecast_quality
from bench.data import file_symbol, load_daily

DATA = Path(__file__).parent / "data"
BTC = DATA / "Binance_BTCUSDT_d.csv"


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training is a tripwire here: these files must be refused before it starts."""

    def trip(*_: object, **__: object) -> None:
        pytest.fail("training started on a file that should have been refused")

    monkeypatch.setattr(forecast_quality, "walk_forward", trip)


def _rewritten(tmp_path: Path, name: str, change: Callable[[list[str]], list[str]]) -> Path:
    """BTC's file under ``name``, its banner kept and its header and rows ``change``d."""
    lines = BTC.read_text().splitlines()
    path = tmp_path / name
    path.write_text("\n".join([lines[0], *change(lines[1:])]) + "\n")
    return path


def test_a_file_named_otherwise_is_read_as_the_pair_its_symbol_column_names(
    tmp_path: Path,
) -> None:
    renamed = tmp_path / "BTCUSDT_Binance_futures_data_day.csv"
    renamed.write_bytes(BTC.read_bytes())
    symbol, frame = load_daily(renamed)
    assert symbol == "BTCUSDT"
    pd.testing.assert_frame_equal(frame, load_daily(BTC)[1])


def test_a_pair_written_with_a_slash_is_the_same_pair(tmp_path: Path) -> None:
    path = _rewritten(
        tmp_path, "btc.csv", lambda rows: [r.replace(",BTCUSDT,", ",BTC/USDT,") for r in rows]
    )
    assert file_symbol(path) == "BTCUSDT"


def test_a_file_without_a_symbol_column_fails_at_once_naming_the_file(
    tmp_path: Path, no_training: None, capsys: pytest.CaptureFixture[str]
) -> None:
    def drop_symbol(rows: list[str]) -> list[str]:
        return [",".join(f for i, f in enumerate(r.split(",")) if i != 2) for r in rows]

    bad = _rewritten(tmp_path, "BTCUSDT_Binance_futures_data_day.csv", drop_symbol)
    with pytest.raises(SystemExit) as exited:
        forecast_quality.main([str(BTC), str(bad), "--presets", "tiny"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "forecast_quality: BTCUSDT_Binance_futures_data_day.csv: no symbol column; "
        "cannot tell which pair the file holds\n"
    )


def test_a_file_of_several_pairs_fails_at_once_naming_them(
    tmp_path: Path, no_training: None, capsys: pytest.CaptureFixture[str]
) -> None:
    def two_pairs(rows: list[str]) -> list[str]:
        return [rows[0], *(r.replace(",BTCUSDT,", ",ETHUSDT,", 1) for r in rows[1:3]), *rows[3:]]

    bad = _rewritten(tmp_path, "mixed.csv", two_pairs)
    with pytest.raises(SystemExit) as exited:
        forecast_quality.main([str(bad), "--presets", "tiny"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "forecast_quality: mixed.csv: holds 2 pairs (BTCUSDT, ETHUSDT), not one\n"
    )


def test_until_keeps_every_candle_up_to_that_day_and_none_after() -> None:
    ((symbol, cut),) = forecast_quality.load_files([BTC], until=date(2023, 6, 30))
    _, whole = load_daily(BTC)
    assert symbol == "BTCUSDT"
    assert cut.index[-1] == pd.Timestamp("2023-06-30", tz="UTC")
    pd.testing.assert_frame_equal(cut, whole.loc[: cut.index[-1]])
    assert len(cut) < len(whole)


def test_an_until_before_a_file_begins_fails_at_once_naming_the_file(
    no_training: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        forecast_quality.main([str(BTC), "--presets", "tiny", "--until", "2017-08-16"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "forecast_quality: Binance_BTCUSDT_d.csv: no BTCUSDT candle on or before 2017-08-16\n"
    )
