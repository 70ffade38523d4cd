"""A raw TCP server on 127.0.0.1 for faults an HTTP library will not produce on purpose."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable


class RawServer:
    """Accepts connections on a free loopback port and hands each socket to ``handler``."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._open.append(connection)
            connection.recv(65536)  # the request; its content does not matter here
            self._handler(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._open:
            connection.close()
        self._listener.close()


def never_answer(_connection: socket.socket) -> None:
    """Keep the connection open and send nothing (a read timeout for the client)."""


def reset(connection: socket.socket) -> None:
    """Abort the connection with a TCP RST."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def truncated(body: bytes, announced: int) -> Callable[[socket.socket], None]:
    """Announce ``announced`` bytes, send ``body`` (shorter), then close."""

    def handler(connection: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {announced}\r\n\r\n"
        connection.sendall(head.encode() + body)
        connection.close()

    return handler
