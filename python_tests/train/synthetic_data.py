"""A small learnable dataset written in the user-sequence format and split by srkd_ext.data."""

from pathlib import Path

import numpy as np

from srkd_ext.data import leave_one_out_split, load_dataset


def synthetic_split(directory: Path, users: int = 60, items: int = 30, seed: int = 0):
    """Each user walks the item ring mostly one step at a time (a pattern a model can learn),
    with random jumps; lengths 3..25, so some sequences exceed short windows."""
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(1, users + 1):
        length = int(rng.integers(3, 26))
        item = int(rng.integers(0, items))
        seq = []
        for _ in range(length):
            seq.append(item + 1)
            item = (item + 1) % items if rng.random() < 0.8 else int(rng.integers(0, items))
        lines.append(" ".join(map(str, [user, *seq])))
    path = Path(directory) / "synthetic.txt"
    path.write_text("\n".join(lines) + "\n")
    return leave_one_out_split(load_dataset(path, format="user-seq"))
