"""The training recipe's keys for the real-dataset presets: augmentation, the step schedule, task
selection and relations, and their validation."""

import numpy as np
import pytest
import torch

from builders.plan import make_plan
from modelset.augment import augment
from modelset.errors import ModelsetError
from modelset.preset import load_preset


def test_augmentation_is_a_padded_crop_and_a_flip_drawn_from_the_generator():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    g = torch.Generator().manual_seed(5)
    before = g.get_state()
    assert augment("none", x, g) is x and torch.equal(g.get_state(), before)  # draws nothing
    a = augment("crop_flip", x, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment("crop_flip", x, torch.Generator().manual_seed(5)))
    assert a.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(a[i], w) or torch.equal(a[i], w.flip(-1)) for w in windows)
    flips = augment("flip", x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(0))
    flipped = [torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flips)]
    assert 20 < sum(flipped) < 80 and all(f or torch.equal(flips[i], x[i % 2]) for i, f in enumerate(flipped))


def test_step_schedule_and_augmentation_in_the_reference_loop(monkeypatch):
    import builders.train as bt

    seen = []
    make = bt.make_optimizer

    def recording(params, hp):
        opt = make(params, hp)
        step = opt.step

        def spy(*a, **k):
            seen.append(opt.param_groups[0]["lr"])
            return step(*a, **k)

        opt.step = spy
        return opt

    monkeypatch.setattr(bt, "make_optimizer", recording)
    preset = load_preset(
        "digits500",
        ["seeds=1", "tasks.count=1", "epochs=3", "lr_step_size=1", "lr_gamma=0.5", "batch_size=512", "augment=crop"],
    )
    entry = make_plan(preset).entries[0]
    a = bt.train_reference(entry)
    assert seen == pytest.approx([0.003, 0.0015, 0.00075])  # one minibatch per epoch; lr halves after 1 and 2
    assert np.array_equal(a.params, bt.train_reference(entry).params)  # augmented training is reproducible
    plain = bt.train_reference(
        make_plan(load_preset("digits500", ["seeds=1", "tasks.count=1", "epochs=3", "batch_size=512"])).entries[0]
    )
    assert not np.array_equal(a.params, plain.params)


def test_augmentation_and_schedule_keys_default_to_changing_nothing():
    train = load_preset("digits500")["train"]
    assert train["augment"] == "none" and train["lr_step_size"] == 0 and train["lr_gamma"] == 0.1


@pytest.mark.parametrize(
    "override, message",
    [
        ("augment=cutout", "train.augment must be one of none, crop, flip, crop_flip"),
        ("lr_step_size=-1", "train.lr_step_size must be a whole number of epochs >= 0"),
        ("lr_step_size=[30]", "train.lr_step_size must be a whole number of epochs >= 0"),
        ("lr_gamma=0", "train.lr_gamma must be a number in (0, 1]"),
        ("tasks.select=random", "tasks.select must be one of balanced, consecutive"),
        ("tasks.relation=cosine", "tasks.relation must be one of jaccard, superclass"),
    ],
)
def test_recipe_and_task_keys_are_validated(override, message):
    with pytest.raises(ModelsetError) as e:
        load_preset("modelset500-cifar100", [override])
    assert message in str(e.value)
