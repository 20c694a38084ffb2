"""A slice of the real ml-100k log (the first users), split by srkd_ext.data, and small teachers."""

from pathlib import Path

from srkd_ext.data import leave_one_out_split, load_dataset
from srkd_ext.models import build_model
from srkd_ext.train import TrainConfig, seed_everything, train

MAX_LEN = 12


def ml100k_slice(shared_data_dir: Path, directory: Path, users: int = 80):
    """The first `users` users of ../shared/data/ml-100k.inter, rewritten in the user-sequence
    format and loaded again (items renumbered over the slice)."""
    dataset = load_dataset(shared_data_dir / "ml-100k.inter")
    lines = [" ".join(map(str, [u + 1, *dataset.sequence(u).tolist()])) for u in range(users)]
    path = Path(directory) / "ml-100k-slice.txt"
    path.write_text("\n".join(lines) + "\n")
    return leave_one_out_split(load_dataset(path, format="user-seq"))


def trained_teachers(split, directory: Path):
    """Two SASRec teachers of different sizes and a GRU4Rec teacher, a few epochs each."""
    specs = [
        ("sasrec", {"hidden_dim": 32, "num_layers": 1, "num_heads": 2}),
        ("sasrec", {"hidden_dim": 16, "num_layers": 1, "num_heads": 1}),
        ("gru4rec", {"hidden_dim": 24}),
    ]
    teachers = []
    for i, (arch, hparams) in enumerate(specs):
        seed_everything(i)
        teacher = build_model(arch, split.num_items, MAX_LEN, dropout=0.1, **hparams)
        cfg = TrainConfig(epochs=2, batch_size=64, max_len=MAX_LEN, lr=5e-3, patience=None, seed=i, windows="last")
        train(teacher, split, cfg, Path(directory) / f"teacher{i}", progress=False)
        teachers.append(teacher.eval())
    return teachers
