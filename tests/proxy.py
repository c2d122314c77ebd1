"""A TCP proxy between a client and a real Redis server, for the faults a
network makes: a reply that never arrives (the connection is cut after the
server has acted), a reply that comes late, a connection cut at any moment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Proxy:
    """Listens on a free port of 127.0.0.1 and forwards each connection to
    ``host:port``. Use as ``async with Proxy(host, port) as proxy``."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._drops = 0
        self._cut_on: bytes | None = None
        self._held = asyncio.Event()
        self._held.set()
        #: Replies dropped so far (each with its connection).
        self.dropped = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f'redis://127.0.0.1:{self.port}/0'

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, '127.0.0.1', 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        self._held.set()
        await self._server.wait_closed()

    def drop_replies(self, count: int = 1) -> None:
        """The next ``count`` replies (on whatever connection) are thrown
        away and their connections cut: the server has run the command,
        the client never hears of it."""
        self._drops += count

    def cut_on(self, command: bytes | None) -> None:
        """Cuts each connection whose client sends ``command`` (e.g.
        ``b'SUBSCRIBE'``), before the server sees it; ``None`` stops."""
        self._cut_on = command

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Keeps every reply from the server until the block ends."""
        self._held.clear()
        try:
            yield
        finally:
            self._held.set()

    def cut(self) -> None:
        """Cuts every connection now."""
        for client, server in list(self._links):
            client.close()
            server.close()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        link = (client_writer, server_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, link, replies=False),
                self._pump(server_reader, client_writer, link, replies=True),
            )
        finally:
            self._links.discard(link)
            for writer in link:
                writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        *,
        replies: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if not replies and self._cut_on is not None and self._cut_on in data.upper():
                    break
                if replies:
                    await self._held.wait()
                    if self._drops:
                        self._drops -= 1
                        self.dropped += 1
                        for end in link:
                            end.close()
                        return
                writer.write(data)
                await writer.drain()
        for end in link:
            end.close()
