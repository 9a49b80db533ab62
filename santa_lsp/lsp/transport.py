"""The server's transports: stdio and TCP, read through `framing.Framer`.

These replace pygls 2.1.1's `JsonRPCServer.start_io` / `start_tcp` reader loops (see
framing.py for what goes wrong in them). TCP serves one client at a time: pygls keeps a
single protocol object and points its writer at each new connection, so a second client
took over the first one's session (its answers, documents and settings), and its disconnect
stopped the server. Here a connection that arrives while another is active gets one
`window/showMessage` error saying so and is closed; the active session never notices. The
session ends (and the server with it) when its client disconnects, as with stdio.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, BinaryIO

from pygls.io_ import StdoutWriter

from santa_lsp.lsp.framing import Framer

if TYPE_CHECKING:
    from santa_lsp.lsp.server import SantaLanguageServer

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
BUSY_MESSAGE = ("santa-lsp: this server already serves another client; start another one "
                "(santa-lsp serve --tcp --port N) for this editor")


async def pump(ls: SantaLanguageServer, read: Callable[[], Awaitable[bytes]]) -> None:
    """Read until end of input, handing every framed message to the protocol."""
    protocol = ls.protocol
    framer = Framer(protocol.report_input)
    while True:
        data = await read()
        if not data:
            break
        for item in framer.feed(data):
            protocol.receive(item)
    if framer.buffered:
        log.warning("input ended inside a message (%d bytes unread)", framer.buffered)


def serve_stdio(ls: SantaLanguageServer, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Serve over stdin/stdout until stdin ends."""
    ls.protocol.set_writer(StdoutWriter(stdout))
    read_some = getattr(stdin, "read1", stdin.read)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)  # backpressure: the reader waits for the loop

        def reader() -> None:
            while True:
                try:
                    data = read_some(CHUNK)
                except (OSError, ValueError):
                    data = b""
                try:
                    asyncio.run_coroutine_threadsafe(chunks.put(data), loop).result()
                except RuntimeError:  # the loop is gone
                    return
                if not data:
                    return

        threading.Thread(target=reader, name="santa-stdin", daemon=True).start()
        await pump(ls, chunks.get)

    try:
        asyncio.run(main())
    except BrokenPipeError:
        log.error("the client closed its end of the connection")
    except (KeyboardInterrupt, SystemExit):
        pass


def serve_tcp(ls: SantaLanguageServer, host: str, port: int) -> None:
    """Listen on host:port; serve the first client until it disconnects, refusing others meanwhile.

    Raises OSError when the address cannot be bound."""

    async def main() -> None:
        done = asyncio.Event()
        active: list[asyncio.StreamWriter] = []

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            if active or done.is_set():
                log.warning("refused a second client (%s): this server serves %s", peer,
                            active[0].get_extra_info("peername") if active else "nobody any more")
                body = json.dumps({"jsonrpc": "2.0", "method": "window/showMessage",
                                   "params": {"type": 1, "message": BUSY_MESSAGE}}).encode()
                try:
                    writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    writer.close()
                    await writer.wait_closed()
                except OSError:
                    pass
                return
            active.append(writer)
            log.info("client connected from %s", peer)
            ls.protocol.set_writer(writer)  # type: ignore[arg-type]  # write() and close(), as pygls expects
            try:
                await pump(ls, lambda: reader.read(CHUNK))
            except (ConnectionError, OSError) as err:
                log.warning("connection to %s lost: %s", peer, err)
            except asyncio.CancelledError:
                # Ctrl+C: asyncio.run cancels this task, and asyncio's stream callback would log
                # the cancellation as an error with three chained tracebacks. Leave quietly.
                return
            finally:
                log.info("client %s disconnected", peer)
                done.set()

        server = await asyncio.start_server(connection, host, port)
        log.info("listening on %s", ", ".join(str(s.getsockname()) for s in server.sockets))
        async with server:
            await done.wait()

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, SystemExit):
        pass
