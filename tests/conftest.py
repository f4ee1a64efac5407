"""Shared fixtures. Tests run offline and single-threaded in torch."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
