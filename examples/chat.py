"""A chat between two machines behind NATs: run `python examples/chat.py SERVER ME PEER` on each (the other one
swaps ME and PEER); type lines, end with Ctrl-D. SERVER is a `punch server` both can reach."""

import asyncio
import sys

import punch


async def chat(server: str, me: str, peer: str) -> None:
    async with punch.connect(server, peer, me=me) as conn:
        print(f"talking to {conn.peer} (key {conn.peer_key}) over the {conn.path.kind} path", flush=True)

        async def show() -> None:
            async for text in conn.texts():
                print(f"[{conn.peer}] {text}", flush=True)

        showing = asyncio.create_task(show())
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip():
                await conn.send_text(line.rstrip("\n"))
        await conn.done_sending()
        await showing  # until the other is done too


if __name__ == "__main__":
    asyncio.run(chat(*sys.argv[1:4]))
