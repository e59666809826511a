"""Two seedfl nodes in one Python process, on loopback, training one model.

    python examples/python_api/two_nodes.py [workdir]

Uses the built-in random ``seedfl:tiny`` model and a made-up classification
task (the label is a marker letter inside the text), so it runs in seconds on
a CPU with nothing downloaded. Swap in your own swarm.toml and data files to
run the same code on a real model.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path

import seedfl

CONFIG = """\
[model]
name = "seedfl:tiny"

[task]
type = "classification"
template = "{text} ="
verbalizer = { "0" = "x", "1" = "y" }
max_length = 32

[zo]
eps = 0.01
lr = 0.001
batch_size = 8
"""


def write_data(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            label = rng.randrange(2)
            word = "".join(rng.choice("abcdefgh") for _ in range(5))
            f.write(json.dumps({"text": word + ("q" if label else "z"), "label": str(label)}))
            f.write("\n")
    return path


async def main(work: Path) -> None:
    config = seedfl.parse_config(CONFIG)
    common = dict(config=config, listen="127.0.0.1:0", mdns=False, max_steps=50)
    async with seedfl.Node(data=write_data(work / "a.jsonl", 200, 1),
                           state_dir=work / "node-a", **common) as a:
        # The second node needs the first one's address (port 0 picked it).
        b = seedfl.Node(data=write_data(work / "b.jsonl", 200, 2),
                        state_dir=work / "node-b", peers=[a.address], **common)
        async with b:
            await a.wait_for(steps=50, timeout=300)
            status = await b.wait_for(steps=50, applied=100, timeout=300)
            print(f"{status.name}: applied {status.applied_total} updates, "
                  f"loss EMA {status.loss_ema:.4f}, peers alive {status.alive_peers}")
            print("version vector:", status.version_vector)
            out = await b.export(work / "model")
            print(f"exported a plain transformers model to {out}")


if __name__ == "__main__":
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="seedfl-"))
    asyncio.run(main(workdir))
