"""A TCP proxy on loopback that a test can partition: the network fault we can make here.

While partitioned, new and existing connections stay open but nothing is forwarded either way,
like packets dropped on the floor: the client's query is sent and no answer ever comes. Healing
resets the connections that lived through the partition (as a real one usually does) and
forwards again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading


class PartitionableProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.partitioned = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def partition(self) -> None:
        self.partitioned.set()

    def heal(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    # Linger 0: close with a reset, as a broken path would end it.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
        self.partitioned.clear()

    def close(self) -> None:
        self._stop.set()
        self.heal()
        self.listener.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                if self.partitioned.is_set():
                    self._stop.wait(0.05)  # hold everything: nothing in, nothing out
                    if client.fileno() == -1:
                        return
                    continue
                for key, _ in selector.select(timeout=0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
