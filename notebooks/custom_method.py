# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A custom method, registered from a notebook and benchmarked beside the built-ins
#
# A method in adbench is a Lightning module that follows a small contract:
#
# - a **frozen dataclass config** deriving from `adbench.MethodConfig` (which already holds the
#   `data`, `optim`, `scoring` and `trainer` sections);
# - a subclass of `adbench.AnomalyMethod` that annotates `config: TheConfig`, builds its
#   networks in `__init__`, returns a loss from `training_step` and, in `forward`, turns a batch
#   of images into an `AnomalyOutput` (an anomaly map and an image score per image).
#
# Evaluation, metrics, checkpoints and the optimiser come from the base class. Registering the
# class with the `@adbench.method` decorator makes it available to `adbench.create`, to sweeps
# and to the leaderboard under its name, exactly like the built-in methods.

# %%
import itertools
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from IPython.display import Markdown, display
from torch import Tensor, nn

import adbench
from adbench.contract import DataDefaults, OptimConfig, ScoringConfig

STEPS = int(os.environ.get("ADBENCH_STEPS", "5"))
WORK = Path(os.environ.get("ADBENCH_WORK") or tempfile.mkdtemp(prefix="adbench_custom_"))

# %% [markdown]
# ## The method: a small convolutional autoencoder
#
# Trained on normal images only, an autoencoder learns to reproduce normal appearance; at test
# time the per-pixel reconstruction error is the anomaly map. This is the simplest
# reconstruction-based detector, and a useful floor for the built-in methods. Every choice it
# makes is a config field, so a sweep can vary it.


# %%
@dataclass(frozen=True)
class ConvAEConfig(adbench.MethodConfig):
    """A convolutional autoencoder scored by its reconstruction error."""

    width: int = 32  # channels of the first encoder stage; doubled at each later stage
    stages: int = 3  # stride-2 stages in the encoder (and the decoder)
    error: Literal["l1", "l2"] = "l2"  # per-pixel error, averaged over the colour channels
    data: DataDefaults = field(default_factory=lambda: DataDefaults(image_size=64, batch_size=8))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))
    scoring: ScoringConfig = field(default_factory=lambda: ScoringConfig(sigma=1.0))


@adbench.method("conv_ae", config=ConvAEConfig,
                presets={"tiny": {"width": 8, "stages": 2}, "paper": {}},
                paper="a plain convolutional autoencoder (baseline written in a notebook)")
class ConvAE(adbench.AnomalyMethod):
    """Anomaly map = reconstruction error of a convolutional autoencoder."""

    config: ConvAEConfig

    def __init__(self, config: ConvAEConfig) -> None:
        super().__init__(config)
        widths = [3] + [config.width * 2**i for i in range(config.stages)]
        encoder, decoder = [], []
        for c_in, c_out in itertools.pairwise(widths):
            encoder += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        for c_in, c_out in itertools.pairwise(widths[::-1]):
            decoder += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        decoder[-1] = nn.Sigmoid()  # images are in [0, 1]
        self.encoder, self.decoder = nn.Sequential(*encoder), nn.Sequential(*decoder)

    def pixel_error(self, images: Tensor) -> Tensor:
        """(B, 1, H, W) reconstruction error."""
        difference = self.decoder(self.encoder(images)) - images
        error = difference.abs() if self.config.error == "l1" else difference.pow(2)
        return error.mean(dim=1, keepdim=True)

    def training_step(self, batch: adbench.Batch, batch_idx: int) -> Tensor:
        loss = self.pixel_error(batch.image).mean()
        self.log("train/loss", loss, batch_size=len(batch))
        return loss

    def forward(self, images: Tensor) -> adbench.AnomalyOutput:
        # postprocess resizes, smooths (scoring.sigma) and pools (scoring.pooling) the raw map
        return self.postprocess(self.pixel_error(images), images.shape[-2:])


print(adbench.list_methods())

# %% [markdown]
# The registry now knows `conv_ae`: presets are resolved, overrides are type-checked, and a
# typo in a key fails with a suggestion.

# %%
method = adbench.create("conv_ae", preset="tiny", error="l1")
print(method.config)
with torch.no_grad():
    output = method(torch.rand(2, 3, 64, 64))
print(output.anomaly_map.shape, output.score.shape)
try:
    adbench.create("conv_ae", preset="tiny", widht=4)
except Exception as err:  # a ConfigError naming the closest key
    print(type(err).__name__, "->", err)

# %% [markdown]
# ## A sweep with the new method beside a built-in one
#
# `run_sweep` takes the same content as a sweep YAML file, here as a dictionary. The sweep runs
# every (dataset, k, seed, method) cell into a results directory, skips cells that already
# finished when run again, and writes the leaderboard and the category-scaling plot.
#
# Cells run in this process with the local launcher, so the class defined above is found. For
# launchers that start fresh processes (SLURM jobs, Ray workers, multi-GPU cells), put the class
# in a Python file and list it under `plugins:` in the sweep (or pass `--plugin my_method.py` to
# `adbench run`), or ship it in a package with an `adbench.methods` entry point.

# %%
sweep = {
    "name": "custom_method",
    "methods": [{"name": "conv_ae", "preset": "tiny"},
                {"name": "mddnet", "preset": "tiny"}],
    "datasets": [{"format": "synthetic", "root": str(WORK / "synthetic"),
                  "synthetic": {"n_categories": 2, "image_size": 64, "n_train": 8,
                                "n_test": 6, "seed": 0}}],
    "categories": [1, 2],
    "seeds": [0],
    "image_size": 64,
    "trainer": {"max_steps": STEPS, "accelerator": "cpu", "devices": 1},
    "checkpoints": False,  # keep no model weights in the cell folders
    "launcher": {"name": "local"},
}
report = adbench.run_sweep(sweep, WORK / "results", progress=False)
print(report.summary())

# %%
display(Markdown(adbench.leaderboard(report.out)))

# %% [markdown]
# Every cell keeps its resolved config, so the results say exactly what ran:

# %%
adbench.load_cells(report.out)[["method", "k", "seed", "status", "train_s", "params"]]

# %% [markdown]
# ## From a notebook cell to a plugin package
#
# To share the method, move the two classes into a module of a package and declare an entry
# point instead of using the decorator:
#
# ```toml
# [project.entry-points."adbench.methods"]
# conv_ae = "my_package.conv_ae:SPEC"
# ```
#
# with `SPEC = adbench.MethodSpec("conv_ae", ConvAE, ConvAEConfig, presets, paper=...)`. After
# `pip install`, `adbench list` shows it and `methods: all` in a sweep includes it.
