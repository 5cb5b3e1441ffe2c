"""Training-time augmentation of a minibatch of standardised (n, C, H, W) images.

Every random draw comes from the generator passed in (the trainer's, seeded by the plan entry's
``data_seed``), so an augmented model is as reproducible as any other. ``none`` draws nothing, so a
recipe without augmentation consumes the generator exactly as before augmentation existed.

- ``crop``: pad 4 pixels on every side, then a random H x W window (torchvision's
  ``RandomCrop(size, padding=4)``). Padding is 0 in standardised units, i.e. the train split's
  mean colour.
- ``flip``: mirror left-right with probability 1/2 (``RandomHorizontalFlip``).
- ``crop_flip``: both, the crop first (the usual CIFAR recipe).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4


def _crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=gen).to(x.device)
    padded = F.pad(x, (PAD, PAD, PAD, PAD))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # n, 1, h, 1
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # n, 1, 1, w
    i = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[i, ch, rows, cols]


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


AUGMENTATIONS = {
    "none": lambda x, gen: x,
    "crop": _crop,
    "flip": _flip,
    "crop_flip": lambda x, gen: _flip(_crop(x, gen), gen),
}


def augment(name: str, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return AUGMENTATIONS[name](x, gen)
