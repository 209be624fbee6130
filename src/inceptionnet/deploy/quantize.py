"""Post-training static int8 quantization of a checkpoint (or an exported fp32 ONNX file) with
onnxruntime's quantization tools: QDQ format, per-channel int8 weights, uint8 activations whose ranges
are calibrated on a few hundred images of a folder, made with the model's own preprocessing.

The fp32 graph is `inceptionnet.export`'s (BN folded into the convolutions, parity-checked against
PyTorch), prepared with onnxruntime's `quant_pre_process`, so only convolutions, matmuls and their
activations are quantized; by default the weights use 7 bits and the classifier stays fp32 (see `quantize`).
The int8 file keeps the fp32 file's metadata (precision "int8"), so `eval`, `predict` and `serve` run it
like the original.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import OnnxModel, read_onnx_metadata, write_onnx_metadata
from ..data.images import BadImageError, load_image
from ..data.transforms import build_eval_transform
from ..errors import ConfigError, DataError
from ..fileio import atomic_write
from ..models.registry import Preprocess

DEFAULT_CALIBRATION_IMAGES = 300
# Names of onnxruntime's CalibrationMethod members by their --method spelling.
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


def calibration_files(folder: str | os.PathLike, count: int, seed: int = 0) -> list[Path]:
    """Up to `count` image files of `folder` (searched recursively), a seeded random sample across all of
    its classes rather than the first folder's; a DataError when it holds none."""
    from ..predict import list_images

    if count < 1:
        raise ConfigError(f"--num-images must be at least 1, got {count}")
    files = list_images(folder)
    if not files:
        raise DataError(f"--calib {folder}: no image files found")
    return sorted(random.Random(seed).sample(files, count)) if len(files) > count else files


class FolderCalibration:
    """onnxruntime's calibration input: {input name: (B, C, H, W) float32 array} batches of image files,
    each made with `preprocess` (resize, centre crop, normalise); unreadable files are skipped and counted.
    (A `CalibrationDataReader` by onnxruntime's own subclass hook: anything with `get_next`.)"""

    def __init__(self, files: Sequence[Path], preprocess: Preprocess, input_name: str, batch_size: int = 16) -> None:
        self.transform = build_eval_transform(preprocess)
        self.files = list(files)
        self.input_name = input_name
        self.batch_size = batch_size
        self.position = 0
        self.used = 0
        self.skipped: list[tuple[str, str]] = []

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when every file was read (onnxruntime's end signal)."""
        tensors = []
        while not tensors and self.position < len(self.files):
            for path in self.files[self.position:self.position + self.batch_size]:
                try:
                    tensors.append(self.transform(load_image(path)))
                except BadImageError as e:
                    self.skipped.append((str(path), e.reason))
            self.position += self.batch_size
        if not tensors:
            return None
        self.used += len(tensors)
        return {self.input_name: torch.stack(tensors).numpy()}

    def rewind(self) -> None:
        """Start again from the first file (for a second pass, such as the agreement check)."""
        self.position = 0
        self.used = 0
        self.skipped = []


def classifier_nodes(graph) -> list[str]:
    """The name of the classifier of an ONNX `graph` (a GraphProto): the last Conv/Gemm/MatMul before the
    logits output, found by walking back from the output through the ops between them (such as Flatten);
    an empty list when there is none."""
    producers = {output: node for node in graph.node for output in node.output}
    tensor = graph.output[0].name
    while (node := producers.get(tensor)) is not None:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            return [node.name]
        tensor = node.input[0]
    return []


def top1_agreement(reference: OnnxModel, candidate: OnnxModel, reader: FolderCalibration) -> float:
    """The fraction of `reader`'s images on which both models predict the same class (a quick check of
    the quantized model against its fp32 original on the calibration images)."""
    reader.rewind()
    same = total = 0
    while (batch := reader.get_next()) is not None:
        x = torch.from_numpy(batch[reader.input_name])
        same += int((reference(x).argmax(1) == candidate(x).argmax(1)).sum())
        total += len(x)
    return same / max(1, total)


def quantize(checkpoint: str | os.PathLike, calib: str | os.PathLike, out: str | os.PathLike,
             num_images: int = DEFAULT_CALIBRATION_IMAGES, method: str = "minmax", per_channel: bool = True,
             seed: int = 0, reduce_range: bool = True, fp32_classifier: bool = True) -> dict[str, Any]:
    """Write `checkpoint` (a model `inceptionnet.artifacts.load_model` takes: an fp32 .onnx from `export` as it
    is, anything else exported first) as a static int8 QDQ ONNX model to `out`, calibrated on up to
    `num_images` images of the folder `calib` with `method` (minmax, percentile or entropy); `reduce_range`:
    7-bit weights; `fp32_classifier`: the classifier
    (`classifier_nodes`) stays fp32. Returns {"path", "calibration_images", "skipped", "agreement" (top-1
    agreement with the fp32 model on the calibration images), "method", "per_channel", "reduce_range",
    "fp32_nodes"}.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..artifacts import model_kind, resolve
    from ..export import export

    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"--method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    files = calibration_files(calib, num_images, seed)
    with tempfile.TemporaryDirectory(prefix="inceptionnet-quantize-") as tmp:
        exported = model_kind(checkpoint) == "onnx"
        fp32_path = resolve(checkpoint) if exported else Path(tmp) / "fp32.onnx"
        if not exported:
            export(checkpoint, "onnx", fp32_path)
        meta = read_onnx_metadata(fp32_path)
        if meta["precision"] != "fp32":
            raise ConfigError(f"{checkpoint} is already {meta['precision']}; quantize the fp32 model")
        fp32 = OnnxModel(fp32_path)
        # The histogram calibrators (percentile, entropy) stack every batch's activations into one array, so
        # their batches must all have one shape: one image each.
        reader = FolderCalibration(files, Preprocess.from_dict(meta["preprocess"]), fp32.input_name,
                                   batch_size=16 if method == "minmax" else 1)
        # onnxruntime's recommended preparation (shape inference, graph optimisation): ~5 % faster int8 here.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        # Defaults measured on the demo model (bench/RESULTS.md): with 8-bit weights, CPUs without VNNI (AVX2)
        # overflow the 16-bit sums of two uint8 x int8 products (2 x 255 x 127 > 32767), mostly in the first
        # convolution's dot products over normalised pixels; 7-bit weights cannot (2 x 255 x 64 fits) and run as fast.
        # The fp32 classifier, which writes the logits, costs no measurable speed either. Together they cut the
        # relative logit error from 4.2 % to 1.7 %; keeping the first convolution fp32 instead costs ~20 %.
        fp32_nodes = classifier_nodes(onnx.load(str(prepared)).graph) if fp32_classifier else []

        def write(target: str) -> None:
            quantize_static(str(prepared), target, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod[CALIBRATION_METHODS[method]],
                            reduce_range=reduce_range, nodes_to_exclude=fp32_nodes)
            if reader.used == 0:
                raise DataError(f"--calib {calib}: none of the {len(files)} sampled files is a readable image")
            write_onnx_metadata(target, {**meta, "precision": "int8"})

        path = atomic_write(out, write)
        used, skipped = reader.used, list(reader.skipped)
        agreement = top1_agreement(fp32, OnnxModel(path), reader)
    return {"path": str(path), "calibration_images": used, "skipped": skipped, "agreement": agreement,
            "method": method, "per_channel": per_channel, "reduce_range": reduce_range, "fp32_nodes": fp32_nodes}


def describe(result: dict[str, Any]) -> str:
    """One line for the CLI: where the int8 model went, what calibrated it, how often it agrees with fp32."""
    skipped = f", {len(result['skipped'])} unreadable skipped" if result["skipped"] else ""
    bits = "7-bit" if result["reduce_range"] else "8-bit"
    fp32 = ", classifier in fp32" if result["fp32_nodes"] else ""
    return (f"wrote {result['path']} (int8 QDQ, {bits} weights, per-channel: {result['per_channel']}{fp32}); "
            f"calibrated on {result['calibration_images']} images{skipped} ({result['method']}); top-1 agreement "
            f"with fp32 on them {100 * result['agreement']:.1f}%")
