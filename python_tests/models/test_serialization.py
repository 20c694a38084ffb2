"""Save/load and export round trips: a reloaded or exported model gives the same scores."""

import pytest
import torch
from tiny_models import MAX_LEN, NUM_ITEMS, TINY, histories, tiny_model

from srkd_ext.models import build_model, export_model, load_exported, load_model, model_checksum, save_model


@pytest.mark.parametrize("arch", sorted(TINY))
def test_save_load_round_trip(arch, tmp_path):
    model = tiny_model(arch)
    path = save_model(model, tmp_path / "model.pt")
    # Plain data only: loadable under torch.load's safe mode (torch >= 2.6 default).
    payload = torch.load(path, weights_only=True)
    assert payload["config"] == model.config
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    x = histories()
    assert torch.equal(loaded.predict(x), model.predict(x))
    assert model_checksum(loaded) == model_checksum(model)


def test_load_refuses_a_file_that_is_not_a_model(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved srkd_ext model"):
        load_model(tmp_path / "other.pt")


def test_checksum_changes_with_any_weight():
    model = tiny_model("sasrec")
    before = model_checksum(model)
    with torch.no_grad():
        model.item_embedding.weight[3, 0] += 1e-3
    assert model_checksum(model) != before


@pytest.mark.parametrize("arch", ["sasrec", "srcd"])
def test_exported_student_gives_the_same_scores(arch, tmp_path):
    torch.manual_seed(0)
    model = tiny_model(arch)
    path = export_model(model, tmp_path / f"{arch}.pt2")
    exported = load_exported(path)
    for batch in (1, 7):  # the batch dimension is dynamic
        x = histories(batch=batch, seed=batch)
        expected = model.predict(x)
        got = exported(x)
        assert got.shape == (batch, NUM_ITEMS + 1)
        assert torch.isneginf(got[:, 0]).all()
        torch.testing.assert_close(got[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-5)


def test_export_of_a_recurrent_teacher_leaves_it_usable(tmp_path):
    model = build_model("gru4rec", NUM_ITEMS, MAX_LEN, hidden_dim=8, dropout=0.0).train()
    exported = load_exported(export_model(model, tmp_path / "gru.pt2"))
    assert model.training
    model.eval()
    x = histories()
    torch.testing.assert_close(exported(x)[:, 1:], model.predict(x)[:, 1:], rtol=1e-5, atol=1e-5)


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    model = tiny_model("sasrec")
    path = save_model(model, tmp_path / "model.pt")
    before = path.read_bytes()

    def disk_full(obj, f):
        open(f, "wb").write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"], "the temporary file was left behind"
