"""Streams and datagrams of your own: `python examples/echo_stream.py SERVER ME PEER serve` echoes what the other
side sends; `python examples/echo_stream.py SERVER ME PEER ask` sends a line on a stream and a datagram, and prints
what comes back and over which path."""

import asyncio
import sys

import punch


async def echo(server: str, me: str, peer: str, role: str) -> None:
    async with punch.connect(server, peer, me=me) as conn:
        if role == "serve":
            reader, writer = await conn.accept_stream()
            writer.write(await reader.readline())
            await writer.drain()
            conn.send_datagram(await conn.receive_datagram())
            await conn.wait_closed()  # until the asking side closes
            return
        reader, writer = await conn.open_stream()
        writer.write(b"hello over a QUIC stream\n")
        print("stream:", (await reader.readline()).decode().strip())
        conn.send_datagram(b"hello as a datagram")
        print("datagram:", (await conn.receive_datagram()).decode(), "via", conn.path)


if __name__ == "__main__":
    asyncio.run(echo(*sys.argv[1:5]))
