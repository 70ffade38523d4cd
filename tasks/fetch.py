"""Downloading CDD files: explicit timeouts, bounded retries for transient failures only.

A base URL may be ``https://...`` (CDD itself), another ``http(s)://`` mirror, a local
directory, or a ``file://`` URL. Redirects are followed only within the same host.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests

from candlecast import __version__
from candlecast.core.errors import FetchError, InvalidInputError
from candlecast.core.identifiers import check_exchange, check_symbol, check_timeframe
from candlecast.core.urls import check_base_url, public_url
from tasks.logs import run_logger

USER_AGENT = f"candlecast/{__version__} (+https://github.com/candlecast/candlecast)"
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 3
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class Download:
    """One fetched file: its bytes, where from, and what the server said."""

    url: str
    content: bytes
    http_status: int | None
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)


def cdd_url(base: str, exchange: str, symbol: str, timeframe: str) -> str:
    """``{base}/{Exchange}_{PAIR}_{timeframe}.csv`` after strict checks of every part."""
    name = f"{check_exchange(exchange)}_{check_symbol(symbol)}_{check_timeframe(timeframe)}.csv"
    return f"{check_base_url(base).rstrip('/')}/{name}"


def fetch(
    url: str,
    *,
    symbol: str,
    connect_timeout_s: float = 10.0,
    read_timeout_s: float = 60.0,
    retries: int = 3,
    backoff_s: float = 2.0,
    max_bytes: int = 64 * 1024 * 1024,
    session: requests.Session | None = None,
) -> Download:
    """Fetch ``url`` (http(s), ``file://`` or a local path) and return its bytes.

    Timeouts, connection errors, 429 and 5xx are retried ``retries`` times with exponential
    backoff (``backoff_s``, doubling; a ``Retry-After`` header is honoured up to 60 s).
    Anything else (403, 404, a body over ``max_bytes``, a redirect to another host) fails at
    once with a :class:`FetchError` naming ``symbol`` and the cause.
    """
    try:
        check_base_url(url)
    except InvalidInputError as exc:
        raise FetchError(symbol, str(exc)) from None
    scheme = urlsplit(url).scheme
    if scheme in ("", "file"):
        return _read_local(url, symbol)
    http = session or requests.Session()
    attempt = 0
    while True:
        try:
            status, content, retry_after = _get(
                http, url, symbol, (connect_timeout_s, read_timeout_s), max_bytes
            )
        except (
            requests.Timeout,
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            cause = _describe(exc)
            status, content, retry_after = None, b"", None
        else:
            if status == 200:
                return Download(url, content, status, hashlib.sha256(content).hexdigest())
            cause = f"HTTP {status} from {public_url(url)}"
            if status not in TRANSIENT_STATUS:
                raise FetchError(symbol, cause)
        if attempt >= retries:
            raise FetchError(symbol, f"{cause} (gave up after {attempt + 1} attempts)")
        delay = (
            backoff_s * 2**attempt if retry_after is None else min(retry_after, MAX_RETRY_AFTER_S)
        )
        run_logger(__name__).warning(  # the run's logs, where Prefect's UI shows them
            "%s: %s; retry %d of %d in %.1f s", symbol, cause, attempt + 1, retries, delay
        )
        time.sleep(delay)
        attempt += 1


def _get(
    http: requests.Session, url: str, symbol: str, timeout: tuple[float, float], max_bytes: int
) -> tuple[int, bytes, float | None]:
    origin = urlsplit(url).netloc
    for _ in range(MAX_REDIRECTS + 1):
        with http.get(
            url,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            stream=True,
            allow_redirects=False,
            verify=True,
        ) as response:
            if response.is_redirect:
                target = urljoin(url, response.headers.get("Location", ""))
                if urlsplit(target).netloc != origin or urlsplit(target).scheme not in (
                    "http",
                    "https",
                ):
                    raise FetchError(
                        symbol, f"redirect to another host refused: {public_url(target)}"
                    )
                url = target
                continue
            if response.status_code != 200:
                return response.status_code, b"", _retry_after(response.headers.get("Retry-After"))
            return 200, _read_capped(response, symbol, max_bytes), None
    raise FetchError(symbol, f"more than {MAX_REDIRECTS} redirects from {public_url(url)}")


def _read_capped(response: requests.Response, symbol: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=256 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(symbol, f"body larger than {max_bytes} bytes; refused")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_local(url: str, symbol: str) -> Download:
    path = Path(unquote(urlsplit(url).path) if url.startswith("file:") else url)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise FetchError(symbol, f"no such file in the mirror: {path}") from None
    except OSError as exc:
        raise FetchError(symbol, f"cannot read {path}: {exc.strerror}") from None
    return Download(path.absolute().as_uri(), content, None, hashlib.sha256(content).hexdigest())


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "read timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken mid-body (truncated download)"
    return "connection failed"
