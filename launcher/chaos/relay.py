"""A small TCP relay on the namespace path: the way in to loopback services, and latency.

A process in a namespace cannot reach the root namespace's loopback, where the broker
and the cloud listen. ``DelayRelay`` listens on the root side of a veth
(``Namespace.host_address``) and forwards every connection to a loopback address, so the
services keep listening on loopback only and every byte a node exchanges crosses the
faulty path. It also adds latency and jitter (``set_delay``): this machine's kernel has
no ``netem``. Each chunk read is written ``delay ± jitter`` after it arrived, never before
the chunk ahead of it (TCP keeps order), in both directions.

Closing one side of a relayed connection closes the other, as a direct connection would:
a broker that drops a silent client makes the relay drop the node's side too, which a
node behind a black hole never hears -- exactly the half-open link under test.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Self

CHUNK = 65536


class DelayRelay:
    """Listens on ``(listen_host, port)`` in a thread of its own; forwards to ``target``."""

    def __init__(
        self, listen_host: str, target: tuple[str, int], *, port: int = 0,
        delay: float = 0.0, jitter: float = 0.0, rng: Callable[[], float] = random.random,
    ) -> None:
        self.listen_host, self.target, self._port = listen_host, target, port
        self.delay, self.jitter, self._rng = delay, jitter, rng
        self.connections = 0  # accepted so far
        self.bytes = 0  # relayed so far, both ways
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._closing = False

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"{self.listen_host}:{self.port}"

    def set_delay(self, delay: float, jitter: float = 0.0) -> None:
        """From now on each chunk waits ``delay`` ± ``jitter`` seconds (0: none)."""
        if delay < 0 or jitter < 0 or jitter > delay:
            raise ValueError("delay >= jitter >= 0")
        self.delay, self.jitter = delay, jitter

    def start(self) -> Self:
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, args=(started,),
                                        name=f"relay-{self.listen_host}", daemon=True)
        self._thread.start()
        started.result(10)
        return self

    def close(self) -> None:
        """Stop listening and close every relayed connection."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def drop_connections(self) -> None:
        """Close every relayed connection now (both sides get a FIN), keep listening."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._close_all)

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the relay's own thread ------------------------------------------------------------
    def _main(self, started: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, self.listen_host, self._port))
        except OSError as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            self._closing = True
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()  # every pump sees its connection lost and ends
            pending = asyncio.all_tasks(loop)
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=2))
            for writer in list(self._writers):
                writer.transport.abort()
            loop.run_until_complete(asyncio.sleep(0.05))  # aborts close their sockets on the loop
            loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._writers.discard(writer)
            writer.close()
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except asyncio.CancelledError:  # the loop is stopping: nobody awaits this handler
            pass
        finally:
            for side in (writer, up_writer):
                self._writers.discard(side)
                side.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction, each chunk delayed, in order; at the end, close both ends."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, chunk = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.get_running_loop().create_task(deliver())
        last_due = 0.0
        try:
            while chunk := await reader.read(CHUNK):
                self.bytes += len(chunk)
                offset = self.delay + (2 * self._rng() - 1) * self.jitter if self.delay else 0.0
                last_due = max(last_due, time.monotonic() + offset)
                queue.put_nowait((last_due, chunk))
            queue.put_nowait(None)
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            writer.close()
