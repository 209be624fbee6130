"""The model behind the server: any model file `inceptionnet.artifacts.load_model` takes, a checkpoint or .safetensors
(fused fp32 graph, plus the plain network for Grad-CAM) or an ONNX file (onnxruntime; fp32 or int8), with its
preprocessing, class names and a JSON description."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ..artifacts import load_model
from ..data.transforms import build_eval_transform
from ..evaluate.ensemble import Member, load_member

CPU = torch.device("cpu")


class Predictor:
    """What the server runs: `preprocess(image)` -> (C, S, S) tensor, `probabilities((N, C, S, S))` ->
    (N, classes), `top(probs (classes,), k)`, and `cam_overlay((C, S, S))` -> PNG data URL for checkpoints."""

    def __init__(self, source: str | os.PathLike) -> None:
        self.source = str(source)
        loaded = load_model(source)
        onnx = loaded.kind == "onnx"
        self.name = str(loaded.meta["model_name"])
        self.member: Member = load_member(loaded, CPU, optimize=not onnx)
        # Grad-CAM hooks and differentiates the plain network; an ONNX session offers neither.
        self.plain: Member | None = None if onnx else load_member(loaded, CPU, optimize=False)
        self.transform = build_eval_transform(self.member.preprocess)
        self.class_names = self.member.class_names

    @property
    def cam_available(self) -> bool:
        """Whether `cam_overlay` works: only for PyTorch checkpoints."""
        return self.plain is not None

    def preprocess(self, image: Image.Image) -> Tensor:
        """RGB image -> the (C, S, S) input the model expects (resize, centre crop, normalise)."""
        return self.transform(image)

    @torch.inference_mode()
    def probabilities(self, images: Tensor) -> Tensor:
        """(N, C, S, S) inputs -> (N, classes) softmax probabilities (float32, CPU)."""
        return self.member.logits_to_probs(self.member.model(images)).cpu()

    def top(self, probs: Tensor, k: int) -> list[dict]:
        """The k most probable classes of one (classes,) row: [{"class", "index", "probability"}...]."""
        values, indices = probs.topk(min(k, probs.numel()))
        return [{"class": self.class_names[i], "index": int(i), "probability": float(p)}
                for p, i in zip(values.tolist(), indices.tolist(), strict=True)]

    def cam_overlay(self, image: Tensor) -> str:
        """The Grad-CAM overlay of the predicted class for one (C, S, S) input, as a PNG data URL."""
        from ..analysis.gradcam import GradCAM, model_input_to_image, overlay

        assert self.plain is not None, "Grad-CAM needs a PyTorch checkpoint"
        heatmaps, _ = GradCAM(self.plain.model)(image[None])
        buffer = io.BytesIO()
        overlay(model_input_to_image(image, self.member.preprocess), heatmaps[0]).save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    def info(self) -> dict:
        """The model as /info describes it: name, file, precision, classes, preprocessing, Grad-CAM."""
        return {"model": self.name, "file": Path(self.source).name, "precision": self.member.precision.name,
                "runtime": "onnxruntime" if self.plain is None else "pytorch", "classes": self.class_names,
                "preprocessing": self.member.preprocess.to_dict(), "cam_available": self.cam_available}
