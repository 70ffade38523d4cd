"""Downloads against real servers on 127.0.0.1: retries only for transient failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from candlecast.core.errors import FetchError, InvalidInputError
from tasks.fetch import USER_AGENT, cdd_url, fetch
from tests.rawserver import RawServer, never_answer, reset, truncated

FAST = {"retries": 2, "backoff_s": 0.0, "connect_timeout_s": 2.0, "read_timeout_s": 0.5}
PATH = "/cdd/Binance_BTCUSDT_d.csv"


@pytest.fixture
def btc_bytes(cdd_dir: Path) -> bytes:
    return (cdd_dir / "Binance_BTCUSDT_d.csv").read_bytes()


@pytest.fixture
def raw() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


def test_url_is_built_from_checked_parts() -> None:
    assert cdd_url("https://x.test/cdd/", "Binance", "btcusdt", "d") == (
        "https://x.test/cdd/Binance_BTCUSDT_d.csv"
    )
    assert (
        cdd_url("/srv/mirror", "Binance", "ETHUSDT", "1h") == "/srv/mirror/Binance_ETHUSDT_1h.csv"
    )
    for bad in ["../../etc/passwd", "BTC'; DROP TABLE candles;--", "BTCÜSDT", "B"]:
        with pytest.raises(InvalidInputError, match="invalid symbol"):
            cdd_url("https://x.test", "Binance", bad, "d")
    with pytest.raises(InvalidInputError, match="invalid timeframe"):
        cdd_url("https://x.test", "Binance", "BTCUSDT", "5m")


@pytest.mark.parametrize(
    ("exchange", "symbol", "timeframe", "name"),
    [
        ("Gemini", "BTCUSD", "d", "Gemini_BTCUSD_d.csv"),
        ("Gemini", "btcusd", "1h", "Gemini_BTCUSD_1h.csv"),
        ("Bitstamp", "BTCUSD", "d", "Bitstamp_BTCUSD_d.csv"),
        ("Coinbase", "ETHUSD", "d", "Coinbase_ETHUSD_d.csv"),
        ("Kraken", "XBTEUR", "1h", "Kraken_XBTEUR_1h.csv"),
    ],
)
def test_other_exchanges_files_are_named_as_cdd_names_them(
    exchange: str, symbol: str, timeframe: str, name: str
) -> None:
    assert cdd_url("https://www.cryptodatadownload.com/cdd", exchange, symbol, timeframe) == (
        f"https://www.cryptodatadownload.com/cdd/{name}"
    )


def test_ok_download_sends_user_agent(httpserver: HTTPServer, btc_bytes: bytes) -> None:
    httpserver.expect_oneshot_request(PATH, headers={"User-Agent": USER_AGENT}).respond_with_data(
        btc_bytes, content_type="text/csv"
    )
    download = fetch(httpserver.url_for(PATH), symbol="BTCUSDT", **FAST)
    assert download.content == btc_bytes and download.http_status == 200
    assert len(download.sha256) == 64


@pytest.mark.parametrize("status", [500, 503, 429])
def test_transient_status_is_retried_then_succeeds(
    httpserver: HTTPServer, btc_bytes: bytes, status: int
) -> None:
    httpserver.expect_ordered_request(PATH).respond_with_data("busy", status=status)
    httpserver.expect_ordered_request(PATH).respond_with_data(btc_bytes)
    assert fetch(httpserver.url_for(PATH), symbol="BTCUSDT", **FAST).content == btc_bytes
    assert len(httpserver.log) == 2


def test_persistent_500_gives_up_after_bounded_attempts(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_data("down", status=500)
    with pytest.raises(FetchError, match=r"^BTCUSDT: HTTP 500 .*gave up after 3 attempts"):
        fetch(httpserver.url_for(PATH), symbol="BTCUSDT", **FAST)
    assert len(httpserver.log) == 3


def test_retry_after_header_is_honoured(httpserver: HTTPServer, btc_bytes: bytes) -> None:
    httpserver.expect_ordered_request(PATH).respond_with_response(
        Response("slow down", status=429, headers={"Retry-After": "0"})
    )
    httpserver.expect_ordered_request(PATH).respond_with_data(btc_bytes)
    assert fetch(httpserver.url_for(PATH), symbol="BTCUSDT", **FAST | {"backoff_s": 60}).content


@pytest.mark.parametrize("status", [404, 403, 401, 400])
def test_client_errors_are_not_retried(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request(PATH).respond_with_data("no", status=status)
    with pytest.raises(FetchError, match=f"^BTCUSDT: HTTP {status} from http://127.0.0.1"):
        fetch(httpserver.url_for(PATH), symbol="BTCUSDT", **FAST)
    assert len(httpserver.log) == 1


def test_read_timeout_is_retried_then_reported(raw: list[RawServer]) -> None:
    server = RawServer(never_answer)
    raw.append(server)
    with pytest.raises(FetchError, match="read timed out .*gave up after 3 attempts"):
        fetch(server.url + PATH, symbol="BTCUSDT", **FAST)
    assert server.connections == 3


def test_connection_reset_is_retried(raw: list[RawServer]) -> None:
    server = RawServer(reset)
    raw.append(server)
    with pytest.raises(FetchError, match="connection failed .*gave up after 3 attempts"):
        fetch(server.url + PATH, symbol="BTCUSDT", **FAST)
    assert server.connections == 3


def test_truncated_body_is_detected(raw: list[RawServer], btc_bytes: bytes) -> None:
    server = RawServer(truncated(btc_bytes[:1000], announced=len(btc_bytes)))
    raw.append(server)
    with pytest.raises(FetchError, match="truncated download"):
        fetch(server.url + PATH, symbol="BTCUSDT", **FAST)


def test_connection_refused_names_the_cause() -> None:
    server = RawServer(reset)
    url = server.url
    server.close()  # nothing listens there now
    with pytest.raises(FetchError, match="^ETHUSDT: connection failed"):
        fetch(url + PATH, symbol="ETHUSDT", **FAST)


def test_redirect_to_another_host_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH).respond_with_response(
        Response(status=302, headers={"Location": "http://169.254.169.254/latest/meta-data"})
    )
    with pytest.raises(FetchError, match="redirect to another host refused"):
        fetch(httpserver.url_for(PATH), symbol="BTCUSDT", **FAST)


def test_redirect_on_same_host_is_followed(httpserver: HTTPServer, btc_bytes: bytes) -> None:
    httpserver.expect_request("/old.csv").respond_with_response(
        Response(status=301, headers={"Location": PATH})
    )
    httpserver.expect_request(PATH).respond_with_data(btc_bytes)
    assert fetch(httpserver.url_for("/old.csv"), symbol="BTCUSDT", **FAST).content == btc_bytes


def test_oversized_body_is_refused(httpserver: HTTPServer, btc_bytes: bytes) -> None:
    httpserver.expect_request(PATH).respond_with_data(btc_bytes)
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        fetch(httpserver.url_for(PATH), symbol="BTCUSDT", **FAST | {"max_bytes": 1000})


def test_local_mirror_directory_and_file_url(cdd_dir: Path, btc_bytes: bytes) -> None:
    path = cdd_dir / "Binance_BTCUSDT_d.csv"
    assert fetch(str(path), symbol="BTCUSDT").content == btc_bytes
    assert fetch(path.as_uri(), symbol="BTCUSDT").content == btc_bytes
    with pytest.raises(FetchError, match="no such file in the mirror"):
        fetch(str(cdd_dir / "Binance_NOPE_d.csv"), symbol="NOPE")


def test_a_relative_mirror_folder_works_as_readme_shows_it(
    cdd_dir: Path, btc_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`CANDLECAST_CDD_BASE_URL=../shared/data/cryptodatadownload make run`: a path relative
    to where the command runs."""
    monkeypatch.chdir(cdd_dir.parent)
    url = cdd_url(cdd_dir.name, "Binance", "BTCUSDT", "d")
    download = fetch(url, symbol="BTCUSDT")
    assert download.content == btc_bytes
    assert download.url == (cdd_dir / "Binance_BTCUSDT_d.csv").as_uri()
