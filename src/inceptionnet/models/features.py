"""`create_model(name, features_only=True)`: a model's trunk that returns its stage feature maps."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .base import InceptionClassifier, stage_indices


class FeatureExtractor(nn.Module):
    """The trunk of `model` (its classifier and aux heads removed) returning the feature maps of the
    stages `out_indices` (positions in `model.feature_info`; None: all). `feature_info` lists the
    chosen stages (`num_chs`, `reduction`, `module`), timm-style.

    (N, C, H, W) -> [(N, num_chs_i, ~H/reduction_i, ~W/reduction_i) for each chosen stage].
    """

    def __init__(self, model: InceptionClassifier, out_indices: int | Sequence[int] | None = None) -> None:
        super().__init__()
        self.out_indices = stage_indices(len(model.feature_info), out_indices)
        self.feature_info = [dict(model.feature_info[i]) for i in self.out_indices]
        model.reset_classifier(0)
        for name in model.aux_head_names:  # aux heads read the trunk but are no features
            setattr(model, name, None)
        model.aux_logits = False
        self.model = model
        for name in ("spec", "in_chans", "min_input_size"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.model.forward_intermediates(x, self.out_indices, intermediates_only=True, stop_early=True)
