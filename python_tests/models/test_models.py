"""Every architecture: causality, shapes, padding handling, configuration errors."""

import pytest
import torch
from tiny_models import MAX_LEN, NUM_ITEMS, TINY, histories, tiny_model

from srkd_ext.models import ARCHITECTURES, SequentialRecommender, build_model


def test_every_architecture_is_tested():
    assert set(TINY) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_shapes_and_padding_column(arch):
    model = tiny_model(arch)
    x = histories()
    hidden = model(x)
    assert isinstance(model, SequentialRecommender)
    assert hidden.shape == (5, MAX_LEN, 16)
    logits = model.predict(x)
    assert logits.shape == (5, NUM_ITEMS + 1)
    assert torch.isneginf(logits[:, 0]).all() and torch.isfinite(logits[:, 1:]).all()
    assert torch.allclose(logits[:, 1:], model.score_items(hidden[:, -1]))
    targets = torch.roll(x, -1, 1)
    targets[:, -1] = 0
    targets[x == 0] = 0
    train_logits, columns = model.training_logits(x, targets)
    assert train_logits.shape == (int((targets != 0).sum()), NUM_ITEMS)
    assert torch.equal(columns, targets[targets != 0] - 1)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_causal_later_items_do_not_change_earlier_outputs(arch):
    model = tiny_model(arch)
    x = histories(batch=4, seed=2)
    x[:, :2] = 0
    for t in range(2, MAX_LEN - 1):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randint(1, NUM_ITEMS + 1, changed[:, t + 1 :].shape)
        before, after = model(x), model(changed)
        assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6), f"position {t} saw the future"
        assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :]), "the test changed nothing"


@pytest.mark.parametrize("arch", sorted(TINY))
def test_output_does_not_depend_on_the_amount_of_left_padding(arch):
    # Right-aligned positions: a history gives the same outputs in a short or a long window.
    model = tiny_model(arch)
    short = torch.randint(1, NUM_ITEMS + 1, (3, 6))
    long = torch.cat([torch.zeros(3, MAX_LEN - 6, dtype=torch.int64), short], dim=1)
    assert torch.allclose(model(short), model(long)[:, -6:], atol=1e-5)
    assert torch.all(model(long)[:, : MAX_LEN - 6] == 0), "padded positions must output zeros"


@pytest.mark.parametrize("arch", sorted(TINY))
def test_gradients_reach_every_parameter(arch):
    model = tiny_model(arch).train()
    x = histories()
    targets = torch.roll(x, -1, 1).clamp(min=1)
    logits, columns = model.training_logits(x, targets)
    torch.nn.functional.cross_entropy(logits, columns).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing}"
    assert torch.all(model.item_embedding.weight.grad[0] == 0), "the padding row must not be trained"


@pytest.mark.parametrize("arch", sorted(TINY))
def test_config_rebuilds_the_same_architecture(arch):
    model = tiny_model(arch)
    rebuilt = build_model(**model.config)
    assert rebuilt.config == model.config
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [
        (n, p.shape) for n, p in model.named_parameters()
    ]


def test_teacher_and_student_are_the_same_class_with_different_sizes():
    teacher = build_model("sasrec", NUM_ITEMS, MAX_LEN, hidden_dim=128, num_layers=2)
    student = build_model("sasrec", NUM_ITEMS, MAX_LEN, hidden_dim=16, num_layers=1)
    assert type(teacher) is type(student)
    assert teacher.num_parameters() > 8 * student.num_parameters()


def test_bad_configuration_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="arch"):
        build_model("bert4rec", NUM_ITEMS, MAX_LEN)
    with pytest.raises(TypeError, match="sasrec"):
        build_model("sasrec", NUM_ITEMS, MAX_LEN, hidden_size=8)
    with pytest.raises(ValueError, match="num_items"):
        build_model("sasrec", 0, MAX_LEN)
    with pytest.raises(ValueError, match="num_heads"):
        build_model("sasrec", NUM_ITEMS, MAX_LEN, hidden_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        build_model("gru4rec", NUM_ITEMS, MAX_LEN, dropout=1.5)
    with pytest.raises(ValueError, match="kernel_sizes"):
        build_model("srcd", NUM_ITEMS, MAX_LEN, kernel_sizes=[3, 3])
    with pytest.raises(ValueError, match="fusion"):
        build_model("srcd", NUM_ITEMS, MAX_LEN, fusion="sum")


def test_input_longer_than_max_len_is_refused():
    model = build_model("sasrec", NUM_ITEMS, MAX_LEN, hidden_dim=8, num_heads=1)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(2, MAX_LEN + 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.ones(MAX_LEN, dtype=torch.int64))


def test_fast_dropout_drops_the_right_fraction_and_keeps_the_mean():
    from srkd_ext.models.dropout import FastDropout

    dropout = FastDropout(0.3).train()
    x = torch.ones(200_000)
    torch.manual_seed(0)
    y = dropout(x)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.01
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y), "the mask must come from torch's seeded generator"
    assert torch.equal(dropout.eval()(x), x)
    with pytest.raises(ValueError, match="dropout"):
        FastDropout(1.0)
