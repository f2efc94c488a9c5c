"""One file from one machine behind a NAT to another: `python examples/send_file.py SERVER ME PEER FILE` sends
FILE; `python examples/send_file.py SERVER ME PEER` on the other machine (ME and PEER swapped) receives it into the
current directory. The receiver checks its size and SHA-256 before it takes the file's name."""

import asyncio
import sys
from pathlib import Path

import punch


async def transfer(server: str, me: str, peer: str, file: str | None = None) -> None:
    async with punch.connect(server, peer, me=me) as conn:
        if file is not None:
            digest = await conn.send_file(Path(file))
            print(f"{conn.peer} has {file} whole (SHA-256 {digest})")
        else:
            stored = await conn.receive_files(Path.cwd())
            print(f"received {stored} from {conn.peer}")


if __name__ == "__main__":
    asyncio.run(transfer(*sys.argv[1:5]))
