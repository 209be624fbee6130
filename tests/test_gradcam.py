"""Grad-CAM: heatmap shape and range for every registered model, and where it points on a known model."""

import pytest
import torch
from torch import nn

from inceptionnet import Preprocess, create_model, get_spec, list_models
from inceptionnet.analysis.gradcam import GradCAM, model_input_to_image, normalize_per_image, save_overlay


def cam_input_size(name):
    # Large enough that the last stage keeps more than 1x1 pixels (the CAM is then not flat).
    spec = get_spec(name)
    return spec.default_input_size if spec.default_input_size <= 32 else max(64, 2 * spec.min_input_size)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_a_normalised_heatmap(name):
    model = create_model(name, num_classes=4, aux_logits=False).eval()
    size = cam_input_size(name)
    x = torch.randn(2, 3, size, size)
    features = GradCAM.feature_map_shape(model, x)
    assert len(features) == 4 and features[-1] * features[-2] > 1  # a spatial map, not the pooled vector
    heat, logits = GradCAM(model)(x)
    assert heat.shape == (2, size, size) and logits.shape == (2, 4)
    assert heat.min() >= 0 and heat.max() <= 1 and torch.isfinite(heat).all()
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


class SpotModel(nn.Module):
    """Features = the input itself (ReLU'd in place, as real stages do), global average pool, linear.
    Class 1 looks only at channel 0, so its CAM is channel 0's picture."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.features[0].bias.zero_()
            self.fc.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def test_heatmap_points_at_the_evidence():
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, 2:6, 9:13] = 1.0  # class 1's evidence, top right
    x[0, 1, 10:14, 1:5] = 1.0  # class 0's evidence, bottom left
    heat, _ = GradCAM(SpotModel())(x, target=torch.tensor([1]))
    assert heat.shape == (1, 16, 16)
    assert heat.max() == pytest.approx(1.0) and heat.min() == 0.0
    row, col = divmod(int(heat.flatten().argmax()), 16)
    assert 2 <= row < 6 and 9 <= col < 13
    assert heat[0, 10:14, 1:5].max() < 0.05  # the other class's evidence is not highlighted
    heat0, _ = GradCAM(SpotModel())(x, target=torch.tensor([0]))
    row, col = divmod(int(heat0.flatten().argmax()), 16)
    assert 10 <= row < 14 and 1 <= col < 5


def test_flat_map_normalises_to_zero():
    maps = torch.stack([torch.full((4, 4), 3.0), torch.arange(16.0).view(4, 4)])
    out = normalize_per_image(maps)
    assert torch.equal(out[0], torch.zeros(4, 4))
    assert out[1].min() == 0 and out[1].max() == 1


def test_overlay_png_of_the_model_input(tmp_path):
    pre = Preprocess(input_size=8, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), input_range=255.0,
                     channel_order="BGR")
    rgb = torch.zeros(3, 8, 8, dtype=torch.uint8)
    rgb[0] = 200  # a red picture
    from inceptionnet.data.transforms import to_model_input

    image = model_input_to_image(to_model_input(rgb, pre), pre)
    assert image.getpixel((3, 3)) == (200, 0, 0)
    path = save_overlay(image, torch.rand(8, 8), tmp_path / "sub" / "x.cam.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
