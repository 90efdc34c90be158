"""STFPM (Wang et al., BMVC 2021) through anomalib's `STFPMModel`.

A frozen pretrained teacher and a student of the same architecture trained from scratch to match
the teacher's normalised features at three levels; the anomaly map is the product over levels of
the per-position squared distance between normalised teacher and student features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from anomalib.models.components import TimmFeatureExtractor
from anomalib.models.image.stfpm.anomaly_map import AnomalyMapGenerator
from anomalib.models.image.stfpm.loss import STFPMLoss
from anomalib.models.image.stfpm.torch_model import STFPMModel
from torch import Tensor, nn

from adbench.backbones import BackboneConfig
from adbench.baselines import PRESETS
from adbench.baselines.adapter import AnomalibAdapter, AnomalibConfig
from adbench.batch import Batch
from adbench.contract import DataDefaults, OptimConfig, TrainerDefaults
from adbench.registry import MethodSpec, presets_from_folder


@dataclass(frozen=True)
class STFPMConfig(AnomalibConfig):
    """STFPM settings; the defaults are the paper's (Wang et al., BMVC 2021, Sec. 4.1)."""

    backbone: BackboneConfig = field(
        default_factory=lambda: BackboneConfig(
            name="resnet18.tv_in1k",  # paper Sec. 4.1: ImageNet ResNet-18 teacher (torchvision)
            layers=(1, 2, 3),  # paper Sec. 3: conv2_x, conv3_x and conv4_x
            weights="pretrained",
        )
    )
    data: DataDefaults = field(default_factory=lambda: DataDefaults(image_size=256, batch_size=32))
    # paper Sec. 4.1: 256 x 256 images, batch 32
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            name="sgd",
            lr=0.4,
            momentum=0.9,
            weight_decay=1e-4,  # paper Sec. 4.1 (anomalib: 1e-3)
        )
    )
    trainer: TrainerDefaults = field(default_factory=lambda: TrainerDefaults(max_epochs=100))
    # paper Sec. 4.1: 100 epochs


class OfflineSTFPMModel(STFPMModel):
    """anomalib's `STFPMModel` whose teacher is created without a hub download.

    anomalib's constructor always asks timm for pretrained teacher weights; this one builds the
    same modules with ``pre_trained=False`` (the adapter then loads the configured weights) and
    inherits everything else, forward and anomaly map included.
    """

    def __init__(self, layers: Sequence[int], backbone: str) -> None:
        nn.Module.__init__(self)
        self.tiler = None
        self.backbone = backbone
        self.teacher_model = TimmFeatureExtractor(
            backbone=backbone, pre_trained=False, layers=layers
        ).eval()
        self.student_model = TimmFeatureExtractor(
            backbone=backbone, pre_trained=False, layers=layers, requires_grad=True
        )
        self.teacher_model.requires_grad_(False)
        self.anomaly_map_generator = AnomalyMapGenerator()


class AnomalibSTFPM(AnomalibAdapter):
    """STFPM: anomalib's torch model and loss with adbench's weights and data."""

    config: STFPMConfig

    def __init__(self, config: STFPMConfig) -> None:
        super().__init__(config)
        self.freeze(self.model.teacher_model)
        self.loss = STFPMLoss()

    def build_model(self, backbone: str, layers: list[int]) -> nn.Module:
        """Anomalib's model (teacher built without downloading, student randomly initialised)."""
        return OfflineSTFPMModel(layers=layers, backbone=backbone)

    def pretrained_extractors(self) -> list[nn.Module]:
        """Only the teacher receives the weights; the student is trained from scratch."""
        return [self.model.teacher_model]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Feature-pyramid matching loss between teacher and student (paper Eq. 1-2)."""
        teacher_features, student_features = self.model(self.normalize(batch.image))
        loss = self.loss(teacher_features, student_features)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss


SPEC = MethodSpec(
    name="anomalib.stfpm",
    module=AnomalibSTFPM,
    config=STFPMConfig,
    presets=presets_from_folder(PRESETS / "stfpm"),
    paper="Wang et al., Student-Teacher Feature Pyramid Matching for Anomaly Detection, "
    "BMVC 2021, arXiv:2103.04257 (implementation: anomalib)",
)
