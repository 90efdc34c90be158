"""GLAD as an `AnomalyMethod`: ATP training and ADS/SAFF reconstruction scoring."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from adbench.batch import AnomalyOutput, Batch
from adbench.contract import AnomalyMethod
from adbench.errors import AdbenchError
from adbench.methods.glad.categories import (
    bidirectional_flags,
    foreground_flags,
    foreground_polarity,
)
from adbench.methods.glad.config import GLADConfig
from adbench.methods.glad.fill import own_fill
from adbench.methods.glad.model import GLADModel
from adbench.methods.glad.stationarity import StationarityStats
from adbench.synthesis import SELF_GRID, AnomalySynthesizer

_info = rank_zero_only(logging.getLogger(__name__).info)  # logs on global rank 0 only


class GLAD(AnomalyMethod):
    """Global and local adaptive diffusion (Yao et al., ECCV 2024, arXiv:2406.07487).

    The timestep at which each scored image stopped adapting is counted in the buffer
    ``stop_step_counts`` (T,), reset at the start of every validation, test and predict epoch;
    ``last_stop_steps`` (B,) holds the last batch's. The mean is logged as ``val/stop_step``
    and ``test/stop_step``.

    With ``scoring.stationary_threshold`` set, every training epoch measures each category's
    stationarity ratio on its training latents (`StationarityStats`); ``stationarity``
    {category name: ratio} keeps the last epoch's, is saved with the weights, and decides which
    test categories are scored with ``scoring.stationary_search_radius``.
    """

    config: GLADConfig

    def __init__(self, config: GLADConfig) -> None:
        super().__init__(config)
        self.model = GLADModel.from_config(self.config)
        self.freeze(self.model.codec)
        synthesis = self.config.training.synthesis
        self.synthesizer = AnomalySynthesizer(synthesis)
        self.self_synthesizer = AnomalySynthesizer(dataclasses.replace(synthesis, source="self"))
        if (
            self.config.training.fill_source == "texture"
            and self.synthesizer.source_used == "textures"
            and self.config.denoiser.kind == "sd_unet"
            and self.config.training.self_source_share < 1.0
        ):
            warnings.warn(
                "GLAD: training.fill_source is 'texture' but training.synthesis.dtd_root is "
                "not set, so anomalies are filled from scikit-image's CC0 textures instead of "
                "DTD; the source used is recorded in the run record",
                stacklevel=2,
            )
        T = self.config.schedule.num_train_timesteps
        self.register_buffer("stop_step_counts", torch.zeros(T, dtype=torch.long), persistent=False)
        self.last_stop_steps: Tensor | None = None
        self.stationarity_stats = StationarityStats()
        self.stationarity: dict[str, float] = {}

    def forward(self, images: Tensor, categories: list[str] | None = None) -> AnomalyOutput:
        """Score images (B, 3, H, W) in [0, 1]: reconstruct (ADS + SAFF), compare features.

        Each image's noise is seeded by the image and ``sampler.seed``, so an image gets the same
        score in any batch.

        Args:
            images: (B, 3, H, W) in [0, 1].
            categories: each image's category name; with ``denoiser.test_prompt="class_name"``
                each image is reconstructed with its category's prompt, and with
                ``scoring.per_category="official"`` the official object-mask and bidirectional
                lists decide for the categories they name, and with
                ``scoring.stationary_threshold`` the measured `stationarity` decides the search
                radius (None: the fixed prompt, the config's ``scoring.foreground`` /
                ``scoring.bidirectional`` and ``scoring.search_radius``).
        """
        class_prompts = self.model.denoiser.class_prompts
        context = (
            class_prompts(categories)
            if categories is not None and class_prompts is not None
            else None
        )
        reconstruction = self.model.reconstruct(images, self.config.sampler.seed, context=context)
        self.last_stop_steps = reconstruction.stop_steps
        self.stop_step_counts += torch.bincount(
            reconstruction.stop_steps, minlength=len(self.stop_step_counts)
        )
        foreground = bidirectional = polarity = None
        scoring = self.config.scoring
        if categories is not None and scoring.per_category == "official":
            foreground = torch.tensor(foreground_flags(categories, scoring.foreground))
            bidirectional = torch.tensor(bidirectional_flags(categories, scoring.bidirectional))
            polarity = torch.tensor(foreground_polarity(categories))
        stationary = self.stationary_flags(categories)
        if self.model.in_feature_space:
            raw = self.model.anomaly_map(
                images,
                reconstruction.latents,
                foreground,
                bidirectional,
                reconstruction.input_latents,
                stationary,
                polarity,
            )
        else:
            raw = self.model.anomaly_map(
                images,
                reconstruction.images,
                foreground,
                bidirectional,
                stationary=stationary,
                polarity=polarity,
            )
        return self.postprocess(raw, tuple(images.shape[-2:]))

    def score(self, batch: Batch) -> AnomalyOutput:
        """Score a test batch with its categories' prompts and official settings (`forward`)."""
        return self(batch.image, self.category_names(batch))

    def stationary_flags(self, categories: list[str] | None) -> Tensor | None:
        """(B,) bool: which images' categories reached ``scoring.stationary_threshold``.

        None when the threshold is off or no category names are given. A category without
        training images is not stationary.
        """
        threshold = self.config.scoring.stationary_threshold
        if threshold is None or categories is None:
            return None
        if not self.stationarity:
            raise AdbenchError(
                "GLAD: scoring.stationary_threshold is set but no category's "
                "stationarity was measured: fit the model first (or load weights "
                "saved after fitting)"
            )
        return torch.tensor([self.stationarity.get(name, 0.0) >= threshold for name in categories])

    def on_train_epoch_start(self) -> None:
        """Measure the categories' stationarity anew in every epoch."""
        self.stationarity_stats.reset()

    def on_train_epoch_end(self) -> None:
        """Keep this epoch's stationarity ratios, summed over all processes."""
        stats, names = self.stationarity_stats, self.datamodule_categories()
        if self.config.scoring.stationary_threshold is None or names is None:
            return
        for name in ("count", "first", "second"):
            setattr(
                stats, name, self.trainer.strategy.reduce(getattr(stats, name), reduce_op="sum")
            )
        ratios = stats.ratios().tolist()
        self.stationarity = {
            name: ratio for name, ratio in zip(names, ratios, strict=True) if ratio == ratio
        }  # NaN: no training images

    def on_train_end(self) -> None:
        """Log which categories will be scored as stationary (rank 0)."""
        if self.stationarity:
            _info(
                f"GLAD stationary categories (scoring.stationary_search_radius "
                f"{self.config.scoring.stationary_search_radius}): "
                f"{self.stationary_categories()}"
            )

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """ATP: synthetic anomalies, noise-level mix and the noise target of the normal latent."""
        names, observe = self.datamodule_categories(), None
        if self.config.scoring.stationary_threshold is not None and names is not None:

            def observe(latents: Tensor) -> None:
                self.stationarity_stats.update(latents, batch.category, len(names))

        anomalous = self.synthesize(batch.image, self.category_names(batch))
        loss = self.model.training_loss(batch.image, anomalous, observe=observe)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    def synthesize(self, images: Tensor, categories: list[str] | None = None) -> Tensor:
        """Synthetic anomalies (B, 3, H, W) on half of the images (``synthesis.probability``).

        With ``training.fill_source="own"`` (the official 2024 code) each anomaly is filled from
        the image's own augmented copy, 8 x 8-shuffled with probability
        ``training.self_source_share`` (`own_fill`); with ``"texture"`` from the texture source,
        or with that probability from the shuffled own copy.

        Args:
            images: (B, 3, H, W) normal training images in [0, 1].
            categories: each image's category name; the official lists decide which categories
                keep anomalies on the object foreground, and with which Otsu class (others:
                ``synthesis.foreground``, with the class rarer on the border).
        """
        foreground = polarity = None
        if categories is not None:
            default = self.config.training.synthesis.foreground
            foreground = torch.tensor(foreground_flags(categories, default))
            polarity = torch.tensor(foreground_polarity(categories))
        share = self.config.training.self_source_share
        if self.config.training.fill_source == "own":
            fill = own_fill(images, share, self.config.training.synthesis.augment).fill
            return self.synthesizer(images, foreground=foreground, polarity=polarity, fill=fill)[0]
        if share >= 1.0:
            return self.self_synthesizer(images, foreground=foreground, polarity=polarity)[0]
        textured = self.synthesizer(images, foreground=foreground, polarity=polarity)[0]
        if share <= 0.0:
            return textured
        own = self.self_synthesizer(images, foreground=foreground, polarity=polarity)[0]
        pick = torch.rand(len(images), device=images.device) < share
        return torch.where(pick.view(-1, 1, 1, 1), own, textured)

    def run_record(self) -> dict[str, Any]:
        """The synthesis sources used and, with a stationarity threshold, what it measured.

        The sources: the fill source and the share of shuffled fills (with "texture" the texture
        source unless every image is self-filled); with ``scoring.stationary_threshold``, each
        category's measured stationarity and the categories scored as stationary.
        """
        training = self.config.training
        share = training.self_source_share
        if training.fill_source == "own":
            synthesis = {
                "fill_source": "own",
                "self_source_share": share,
                "grid": SELF_GRID,
                "augment": training.synthesis.augment,
            }
        else:
            synthesis = {
                "fill_source": "texture",
                "textured": self.synthesizer.record() if share < 1.0 else None,
                "self_source_share": share,
                "self": self.self_synthesizer.record() if share > 0.0 else None,
            }
        record: dict[str, Any] = {"synthesis": synthesis}
        if self.stationarity:  # measured in training (scoring.stationary_threshold)
            record["stationarity"] = {
                name: round(ratio, 4) for name, ratio in self.stationarity.items()
            }
            record["stationary_categories"] = self.stationary_categories()
        return record

    def stationary_categories(self) -> list[str]:
        """The measured categories at or above ``scoring.stationary_threshold``, sorted."""
        threshold = self.config.scoring.stationary_threshold
        return sorted(
            name
            for name, ratio in self.stationarity.items()
            if threshold is not None and ratio >= threshold
        )

    def get_extra_state(self) -> dict[str, Any]:
        """The measured stationarity travels with the weights."""
        return {"stationarity": dict(self.stationarity)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore `get_extra_state`."""
        self.stationarity = dict(state.get("stationarity", {}))

    def stop_step_histogram(self) -> dict[int, int]:
        """Chosen stopping timesteps since the last reset: {timestep: count}, largest t first."""
        counts = self.stop_step_counts.cpu()
        return {int(t): int(counts[t]) for t in counts.nonzero().flatten().flip(0)}

    def reset_stop_steps(self) -> None:
        """Zero ``stop_step_counts``."""
        self.stop_step_counts.zero_()

    def _mean_stop_step(self) -> Tensor:
        counts = self.stop_step_counts.float()
        steps = torch.arange(len(counts), device=counts.device, dtype=torch.float32)
        return (counts * steps).sum() / counts.sum().clamp(min=1)

    def on_validation_epoch_start(self) -> None:
        """Count stop steps of this validation pass only."""
        self.reset_stop_steps()

    def on_validation_epoch_end(self) -> None:
        """Log the mean chosen stopping timestep of the validation pass."""
        self.log("val/stop_step", self._mean_stop_step(), sync_dist=True)

    def on_test_epoch_start(self) -> None:
        """Count stop steps of this test pass only."""
        self.reset_stop_steps()

    def on_test_epoch_end(self) -> None:
        """Log the mean chosen stopping timestep of the test pass and print the distribution."""
        self.log("test/stop_step", self._mean_stop_step(), sync_dist=True)
        self._report_stop_steps()

    def on_predict_epoch_start(self) -> None:
        """Count stop steps of this predict pass only (read them from `stop_step_histogram`)."""
        self.reset_stop_steps()

    def on_predict_epoch_end(self) -> None:
        """Log the distribution of chosen stopping timesteps (`adbench.evaluate` predicts)."""
        self._report_stop_steps()

    def _report_stop_steps(self) -> None:
        """Log this process's stopping-step histogram (rank 0)."""
        _info(f"GLAD stopping timesteps {{t: images}}: {self.stop_step_histogram()}")
