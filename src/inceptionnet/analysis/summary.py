"""Per-layer summaries measured by a real forward pass: output shapes, parameters, multiply-adds;
and GoogLeNet's Table 1 rebuilt from a model.

Multiply-add convention: one multiply-add (a*b + c) counts once. Only convolutions (groups and
kernel size respected) and linear layers are counted: output elements x (in_channels / groups) x
kernel area for a convolution, output elements x in_features for a linear layer, per sample (batch 1).
Not counted: bias additions, batch norm (foldable into the convolution), activations, pooling, LRN,
dropout, concatenations, residual additions, and operations called as functions outside modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import ConfigError

MAC_CONVENTION = ("one multiply-add counted once; convolutions and linear layers only (not bias, BN, "
                  "activations, pooling, LRN, concat, residual adds)")


@dataclass
class LayerRow:
    """One module call: dotted `name`, module `type`, `output_shape` without the batch dimension
    (a tuple of shapes for modules returning several tensors), own and descendants' `params`,
    `macs` of the call, `depth` (number of dotted name parts), and whether it is a `leaf`."""

    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int
    depth: int
    leaf: bool


@dataclass
class Summary:
    """What `summarize` measured: rows in call order and the model's totals."""

    input_shape: tuple[int, int, int]
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    macs: int = 0

    def visible_rows(self, depth: int | None = None) -> list[LayerRow]:
        """Rows of modules at `depth` and leaves above it; every leaf when `depth` is None."""
        if depth is None:
            return [r for r in self.rows if r.leaf]
        return [r for r in self.rows if r.depth == depth or (r.leaf and r.depth < depth)]

    def format(self, depth: int | None = None) -> str:
        """A readable table of `visible_rows(depth)` followed by the totals."""
        rows = self.visible_rows(depth)
        lines = [f"input: {'x'.join(map(str, self.input_shape))}"]
        header = ("layer", "type", "output", "params", "MACs")
        body = [(r.name, r.type, _shape_text(r.output_shape), f"{r.params:,}", f"{r.macs:,}") for r in rows]
        lines += _columns([header, *body], right_aligned={3, 4})
        lines.append(f"params: {self.total_params:,} (trainable {self.trainable_params:,})")
        lines.append(f"multiply-adds: {self.macs:,} ({self.macs / 1e9:.3f} G; {MAC_CONVENTION})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _shape_text(shape: tuple) -> str:
    if shape and isinstance(shape[0], tuple):
        return ", ".join(_shape_text(s) for s in shape)
    return "x".join(map(str, shape)) if shape else "-"


def _columns(rows: list[tuple[str, ...]], right_aligned: set[int]) -> list[str]:
    """Rows of text cells padded to aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    def line(cells: tuple[str, ...]) -> str:
        padded = (c.rjust(w) if i in right_aligned else c.ljust(w)
                  for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    return [line(r) for r in rows]


def layer_macs(module: nn.Module, output: Tensor) -> int:
    """Multiply-adds of one call of a convolution or linear layer for one sample; 0 for other modules.
    `output` is the call's output, (N, C_out, ...) for a convolution, (N, ..., out_features) for a linear."""
    per_sample = output.numel() // max(output.shape[0], 1)
    if isinstance(module, nn.modules.conv._ConvNd):
        return per_sample * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return per_sample * module.in_features
    return 0


def _output_shape(output) -> tuple:
    if isinstance(output, Tensor):
        return tuple(output.shape[1:])
    if isinstance(output, (tuple, list)):
        return tuple(_output_shape(o) for o in output if isinstance(o, (Tensor, tuple, list)))
    return ()


def summarize(model: nn.Module, input_size: int | tuple[int, int], in_chans: int = 3,
              with_aux: bool = False) -> Summary:
    """Run `model` once in eval mode on a (1, in_chans, H, W) zero batch and record, for every
    submodule call, its output shape, parameters and multiply-adds (see MAC_CONVENTION).

    `with_aux=True` calls `model(x, with_aux=True)` so aux heads are measured too. The model's
    training mode is restored afterwards; its weights are not changed.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    summary = Summary(input_shape=(in_chans, h, w))
    stack: list[LayerRow] = []
    handles = []

    def before(name: str, module: nn.Module):
        def hook(_module, _inputs):
            row = LayerRow(name, type(module).__name__, (), sum(p.numel() for p in module.parameters()), 0,
                           name.count(".") + 1, leaf=not any(True for _ in module.children()))
            summary.rows.append(row)
            stack.append(row)
        return hook

    def after(module: nn.Module):
        def hook(_module, _inputs, output):
            row = stack.pop()
            row.output_shape = _output_shape(output)
            if row.leaf and isinstance(output, Tensor):
                macs = layer_macs(module, output)
                row.macs += macs
                summary.macs += macs
                for parent in stack:  # a container's MACs are those of the calls made inside it
                    parent.macs += macs
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(before(name, module)))
            handles.append(module.register_forward_hook(after(module)))
    was_training = model.training
    param = next(model.parameters(), None)
    x = torch.zeros(1, in_chans, h, w, device=param.device if param is not None else "cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(x, with_aux=True) if with_aux else model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    summary.total_params = sum(p.numel() for p in model.parameters())
    summary.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return summary


PAPER_COLUMNS = ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj")


@dataclass
class PaperRow:
    """One row of GoogLeNet's Table 1: layer `name`(s), `type`, `patch` size/stride, `output` (C, H, W),
    `depth` (convolution layers on the longest path), the Inception columns (`PAPER_COLUMNS`, empty when
    not applicable), and the row's `params` and `macs`."""

    name: str
    type: str
    patch: str
    output: tuple[int, int, int]
    depth: int
    columns: dict[str, int]
    params: int
    macs: int


@dataclass
class PaperTable:
    """Table 1 rebuilt from a model: rows, totals and notes on where the model departs from the paper."""

    input_shape: tuple[int, int, int]
    rows: list[PaperRow]
    total_params: int
    macs: int
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        """Table 1's layout: type, patch/stride, output size, depth, Inception columns, params, ops."""
        header = ("layer", "type", "patch/stride", "output size", "depth", *PAPER_COLUMNS, "params", "ops")
        body = [(r.name, r.type, r.patch, "x".join(map(str, (r.output[1], r.output[2], r.output[0]))), str(r.depth),
                 *(str(r.columns[c]) if c in r.columns else "" for c in PAPER_COLUMNS),
                 f"{r.params / 1e3:.1f}K", f"{r.macs / 1e6:.1f}M") for r in self.rows]
        lines = [f"input: {'x'.join(map(str, self.input_shape))}"]
        lines += _columns([header, *body], right_aligned=set(range(4, len(header))))
        lines.append(f"params: {self.total_params:,}; multiply-adds: {self.macs:,} ({self.macs / 1e9:.3f} G; "
                     f"{MAC_CONVENTION})")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _conv(module: nn.Module) -> nn.Conv2d | None:
    """The convolution of a conv(-norm-act) block, or None."""
    if isinstance(module, nn.Conv2d):
        return module
    conv = getattr(module, "conv", None)
    return conv if isinstance(conv, nn.Conv2d) else None


def _patch(kernel, stride) -> str:
    k, s = (kernel, stride) if isinstance(kernel, int) else (kernel[0], stride[0])
    return f"{k}x{k}/{s}"


def _inception_columns(module: nn.Module) -> dict[str, int] | None:
    """Table 1's columns of a GoogLeNet Inception module (1x1 | 1x1-3x3 | 1x1-5x5 | pool-1x1), else None."""
    branches = [getattr(module, f"branch{i}", None) for i in range(1, 5)]
    if any(b is None for b in branches) or hasattr(module, "branch5"):
        return None
    try:
        convs = [_conv(branches[0]), _conv(branches[1][0]), _conv(branches[1][1]), _conv(branches[2][0]),
                 _conv(branches[2][1]), _conv(branches[3][1])]
    except (TypeError, IndexError, NotImplementedError):
        return None
    if any(c is None for c in convs):
        return None
    return dict(zip(PAPER_COLUMNS, (c.out_channels for c in convs), strict=True))


def paper_table(model: nn.Module, input_size: int = 224) -> PaperTable:
    """GoogLeNet's Table 1 produced from `model` (any GoogLeNet variant) at `input_size`: one row per
    top-level layer in call order, with a 1x1 convolution directly followed by a kxk one merged into a
    "reduce" row as in the paper; LRN layers and aux heads have no row. Params and multiply-adds come
    from the model itself (`summarize`)."""
    from ..models.googlenet import GoogLeNet

    if not isinstance(model, GoogLeNet):
        raise ConfigError(f"--paper is GoogLeNet's Table 1; {type(model).__name__} is not a GoogLeNet variant")
    summary = summarize(model, input_size, in_chans=model.in_chans)
    rows: list[PaperRow] = []
    for row in summary.visible_rows(depth=1):
        module = model.get_submodule(row.name)
        row_out: tuple[int, int, int] = row.output_shape  # type: ignore[assignment]
        conv, prev = _conv(module), rows[-1] if rows else None
        if isinstance(module, nn.LocalResponseNorm):
            continue
        if (conv is not None and prev is not None and prev.type == "convolution" and prev.patch == "1x1/1"
                and conv.kernel_size[0] > 1):
            prev.columns = {"#3x3 reduce": prev.output[0], "#3x3": conv.out_channels}
            prev.name, prev.output = f"{prev.name}+{row.name}", row_out
            prev.patch = _patch(conv.kernel_size, conv.stride)
            prev.depth, prev.params, prev.macs = 2, prev.params + row.params, prev.macs + row.macs
            continue
        columns = _inception_columns(module)
        if conv is not None:
            kind, patch, depth = "convolution", _patch(conv.kernel_size, conv.stride), 1
        elif columns is not None:
            kind, patch, depth = "inception", "", 2
        elif isinstance(module, nn.MaxPool2d):
            kind, patch, depth = "max pool", _patch(module.kernel_size, module.stride), 0
        elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
            size = rows[-1].output[1:] if rows else (input_size, input_size)
            kind, patch, depth = "avg pool", f"{size[0]}x{size[1]}/1", 0
        elif isinstance(module, nn.Dropout):
            kind, patch, depth = f"dropout ({module.p:.0%})", "", 0
        elif isinstance(module, nn.Linear):
            kind, patch, depth = "linear", "", 1
        else:
            kind, patch, depth = row.type, "", 0
        if len(row_out) == 1:  # linear layers: (features,) -> (features, 1, 1)
            row_out = (row_out[0], 1, 1)
        rows.append(PaperRow(row.name, kind, patch, row_out, depth, columns or {}, row.params, row.macs))
    notes = []
    if model.cfg.kernel_5x5 != 5:
        notes.append(f"the '#5x5' branch uses {model.cfg.kernel_5x5}x{model.cfg.kernel_5x5} kernels in this variant")
    if model.cfg.bn_eps is not None:
        notes.append("convolutions carry batch norm (its parameters are in 'params'); the paper has none")
    return PaperTable(summary.input_shape, rows, summary.total_params, summary.macs, notes)
