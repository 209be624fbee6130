"""The fast path: `optimize(model)` returns a model that computes the same logits, faster.

Inference (`mode="inference"`) works on a torch.fx graph of the model, so the passes apply to any
architecture built from Conv2d/BatchNorm2d/pooling modules (ours, and torchvision's or timm's too):

1. BatchNorm folded into the preceding convolution (eval statistics become weight and bias).
2. An average pool followed by a 1x1 convolution is rewritten as the 1x1 convolution (without bias),
   then the pool, then the bias: both are linear, so they commute exactly, and the pool then runs
   over the (fewer) output channels. The 1x1 convolution now reads the module input directly, which
   lets step 3 take it in.
3. The parallel 1x1 convolutions of an Inception module that read the same tensor become one
   convolution whose output is split along channels (one bigger GEMM instead of several small ones;
   the input is read once).
4. Dropout (identity in eval) removed.
Then channels_last (oneDNN's native layout on CPU) and a backend: "eager" (the fused fx graph itself:
exportable, scriptable, differentiable; the default "auto" runs it without autograd), "jit"
(torch.jit.freeze + optimize_for_inference; a few seconds to build) or "compile" (torch.compile with
Inductor freezing: the fastest, but up to a minute of compilation, so opt-in). On two CPU cores the
eager graph ran GoogLeNet at 46 images/s against 32 for jit (bench/RESULTS.md).

Training (`mode="train"`) keeps the model's own modules and parameters (optimizer state, checkpoints
and DDP see the same tensors): BN cannot be folded while its statistics are being learnt, and the
merged 1x1 convolution would need its own weight tensor. It applies channels_last and, with
`backend="compile"`, torch.compile.
"""

from __future__ import annotations

import copy
import itertools
import operator
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .errors import ConfigError
from .models.base import InceptionClassifier

MODES = ("inference", "train")
BACKENDS = ("auto", "eager", "jit", "compile")
_RELUS = (nn.ReLU, F.relu, torch.relu)


def optimize(model: nn.Module, mode: str = "inference", *, backend: str = "auto",
             channels_last: bool | None = None, dtype: torch.dtype | None = None,
             example_input: Tensor | None = None) -> nn.Module:
    """Return a faster model computing the same (N, num_classes) logits from (N, C, H, W) images.

    `mode="inference"`: a new eval-mode model (the given one is not changed) with BN folded, sibling
    1x1 convolutions merged, in channels_last, run by `backend` ("auto" = the eager graph under
    inference mode; "eager" keeps it differentiable; "compile" is opt-in because compiling takes up to a
    minute). `dtype` is the compute dtype: float32 unless asked (the same logits as the model, on every
    CPU); `dtype=torch.bfloat16` runs in bf16 (see `inceptionnet.runtime` for when that pays).
    `example_input` (default: one image at the model's default size) is used to trace the "jit" and
    "compile" backends; other batch and image sizes
    work too. The result takes `model(x)` like the original, gives the same too-small-input error,
    and has no aux heads: `model(x, with_aux=True)` returns `(logits, ())`.

    `mode="train"`: the same model object, in channels_last (and compiled with
    `backend="compile"`); its parameters, aux heads and state_dict keys are unchanged.
    """
    if mode not in MODES:
        raise ConfigError(f"optimize: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"optimize: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    device = _device_of(model)
    if channels_last is None:
        channels_last = True  # oneDNN (CPU) and cuDNN (tensor cores) both prefer NHWC convolutions
    if mode == "train":
        return _optimize_train(model, backend, channels_last)
    if dtype is None:
        dtype = torch.float32
    no_grad = backend != "eager"
    if backend == "auto":
        backend = "eager"
    graph = fuse_for_inference(model)
    graph.to(dtype=dtype)
    if channels_last:
        graph.to(memory_format=torch.channels_last)
    if example_input is None:
        size = getattr(getattr(model, "spec", None), "default_input_size", 224)
        example_input = torch.randn(1, getattr(model, "in_chans", 3), size, size)
    run = _apply_backend(graph, backend, _as_input(example_input.to(device), dtype, channels_last))
    return OptimizedModel(run, model, dtype, channels_last, no_grad=no_grad)


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _as_input(x: Tensor, dtype: torch.dtype, channels_last: bool) -> Tensor:
    if x.dtype != dtype:  # no cast at all when it is one already: an exported graph gets no no-op Cast node
        x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _optimize_train(model: nn.Module, backend: str, channels_last: bool) -> nn.Module:
    if backend == "jit":
        raise ConfigError("optimize: backend 'jit' is inference-only; use 'eager' or 'compile' for training")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if backend == "compile":
        return torch.compile(model)
    return model


class OptimizedModel(nn.Module):
    """An inference model made by `optimize`: input checks of the original, then the fast graph.

    (N, C, H, W) float images in any layout and dtype -> (N, num_classes) float32 logits.
    """

    def __init__(self, run: nn.Module | Callable[[Tensor], Tensor], source: nn.Module, dtype: torch.dtype,
                 channels_last: bool, no_grad: bool) -> None:
        super().__init__()
        self.run = run
        self._device = _device_of(source)
        self.dtype = dtype
        self.channels_last = channels_last
        self.no_grad = no_grad
        for name in ("spec", "num_classes", "in_chans", "min_input_size"):
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))
        self.aux_logits = False
        self._check_input = _input_checker(source)

    @property
    def device(self) -> torch.device:
        """Where the model runs: its weights' device (a frozen "jit" graph holds them as constants, not
        parameters: then the device they were optimized on)."""
        first = next(self.parameters(), None)
        return first.device if first is not None else self._device

    def forward(self, x: Tensor, with_aux: bool = False):
        """(N, C, H, W) -> (N, num_classes) logits, or `(logits, ())` with `with_aux`."""
        if self._check_input is not None:
            self._check_input(x)
        x = _as_input(x, self.dtype, self.channels_last)
        if self.no_grad:
            with torch.inference_mode():
                logits = self.run(x)
        else:
            logits = self.run(x)
        if logits.dtype != torch.float32:
            logits = logits.float()
        return (logits, ()) if with_aux else logits


def _input_checker(model: nn.Module) -> Callable[[Tensor], None] | None:
    """The model's own `check_input`, bound to a weightless shallow copy (same class name and sizes)."""
    if not isinstance(model, InceptionClassifier):
        return None
    shell = copy.copy(model)
    shell._parameters, shell._buffers, shell._modules = {}, {}, {}
    return shell.check_input


# ---------------------------------------------------------------------------------------------- tracing


class _Logits(nn.Module):
    """Traceable entry point: the model's `forward_head` with aux heads off (skipping `check_input`,
    whose Python shape checks fx cannot follow; `OptimizedModel` runs them eagerly instead)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.model, InceptionClassifier):
            return self.model.forward_head(x, False)[0]
        return self.model(x)


def trace(model: nn.Module) -> fx.GraphModule:
    """An fx GraphModule of `model` in eval mode, (N, C, H, W) -> logits (a deep copy: `model` is untouched)."""
    model = copy.deepcopy(model).eval()
    return fx.symbolic_trace(_Logits(model).eval())


def fuse_for_inference(model: nn.Module) -> fx.GraphModule:
    """Trace `model` and apply the inference passes (module docstring, steps 1-4); fp32, NCHW, eager."""
    gm = trace(model)
    for graph_pass in (remove_dropout, fold_batchnorm, commute_avgpool_1x1, merge_sibling_1x1):
        graph_pass(gm)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm


def _module(gm: fx.GraphModule, node: fx.Node, kind: type | tuple[type, ...]) -> nn.Module | None:
    """The submodule `node` calls, if it is a call of a `kind` module."""
    if node.op != "call_module":
        return None
    module = gm.get_submodule(node.target)
    return module if isinstance(module, kind) else None


def _replace_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def remove_dropout(gm: fx.GraphModule) -> None:
    """Drop nn.Dropout calls (identity in eval mode)."""
    for node in list(gm.graph.nodes):
        if _module(gm, node, nn.Dropout) is not None:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)


def fold_batchnorm(gm: fx.GraphModule) -> None:
    """Fold every eval BatchNorm2d that only reads a Conv2d's output (used nowhere else) into it."""
    for node in list(gm.graph.nodes):
        bn = _module(gm, node, nn.BatchNorm2d)
        if bn is None or not bn.track_running_stats or not isinstance(node.args[0], fx.Node):
            continue
        conv_node = node.args[0]
        conv = _module(gm, conv_node, nn.Conv2d)
        if conv is None or len(conv_node.users) != 1:
            continue
        _replace_module(gm, conv_node.target, fuse_conv_bn_eval(conv, bn))
        node.replace_all_uses_with(conv_node)
        gm.graph.erase_node(node)


def _is_pointwise_conv(conv: nn.Module | None) -> bool:
    """A plain 1x1 convolution: a per-pixel matrix product, which commutes with spatial linear ops."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) and conv.groups == 1)


def _avgpool_call(gm: fx.GraphModule, node: fx.Node) -> bool:
    return _module(gm, node, nn.AvgPool2d) is not None or (
        node.op == "call_function" and node.target is F.avg_pool2d)


def commute_avgpool_1x1(gm: fx.GraphModule) -> None:
    """avg_pool -> 1x1 conv(+bias)  becomes  1x1 conv (no bias) -> avg_pool -> + bias.

    Exact: average pooling (any padding/count mode) is a per-channel linear map over space and the
    1x1 convolution a per-pixel linear map over channels, so they commute; the bias is added after
    the pool since zero padding would otherwise average it down at the borders.
    """
    for pool in list(gm.graph.nodes):
        if not _avgpool_call(gm, pool) or len(pool.users) != 1:
            continue
        conv_node = next(iter(pool.users))
        conv = _module(gm, conv_node, nn.Conv2d)
        if not _is_pointwise_conv(conv) or conv_node.args[0] is not pool:
            continue
        bias = conv.bias
        conv.bias = None
        with gm.graph.inserting_after(conv_node):
            new_pool = gm.graph.create_node(pool.op, pool.target, (conv_node,) + tuple(pool.args[1:]), pool.kwargs)
        result = new_pool
        if bias is not None:
            bias_name = conv_node.target.replace(".", "_") + "_pooled_bias"
            gm.register_buffer(bias_name, bias.detach().reshape(1, -1, 1, 1).clone())
            with gm.graph.inserting_after(new_pool):
                bias_node = gm.graph.get_attr(bias_name)
            with gm.graph.inserting_after(bias_node):
                result = gm.graph.call_function(operator.add, (new_pool, bias_node))
        conv_node.replace_all_uses_with(result, delete_user_cb=lambda user, keep=new_pool: user is not keep)
        conv_node.args = (pool.args[0],) + tuple(conv_node.args[1:])
        gm.graph.erase_node(pool)


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    return _module(gm, node, nn.ReLU) is not None or (node.op == "call_function" and node.target in _RELUS)


def merge_sibling_1x1(gm: fx.GraphModule) -> None:
    """Merge the 1x1 convolutions that read the same tensor into one convolution, then split.

    The merged output's channels are the members' in order; when each member's only user is a ReLU
    the ReLU is applied once to the merged output (so oneDNN can fuse it into the convolution).
    """
    groups: dict[fx.Node, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        conv = _module(gm, node, nn.Conv2d)
        if _is_pointwise_conv(conv) and conv.padding_mode == "zeros" and isinstance(node.args[0], fx.Node):
            groups.setdefault(node.args[0], []).append(node)
    for index, members in enumerate(m for m in groups.values() if len(m) > 1):
        convs = [gm.get_submodule(n.target) for n in members]
        if len({(c.in_channels, c.weight.dtype) for c in convs}) != 1:
            continue
        relus = [next(iter(n.users)) for n in members if len(n.users) == 1]
        fuse_relu = len(relus) == len(members) and all(_is_relu(gm, r) for r in relus)
        name = f"merged_1x1_{index}"
        gm.add_submodule(name, _concat_convs(convs))
        with gm.graph.inserting_before(members[0]):
            out = gm.graph.call_module(name, (members[0].args[0],))
            if fuse_relu:
                out = gm.graph.call_function(F.relu, (out,))
            # narrow, not split: a branch may apply an in-place ReLU to its piece, which autograd forbids
            # on the outputs of a multi-view op such as split.
            starts = itertools.accumulate([c.out_channels for c in convs[:-1]], initial=0)
            pieces = [gm.graph.call_function(torch.narrow, (out, 1, start, c.out_channels))
                      for start, c in zip(starts, convs, strict=True)]
        for node, piece in zip(members, pieces, strict=True):
            replaced = next(iter(node.users)) if fuse_relu else node
            replaced.replace_all_uses_with(piece)
        for node in members:
            if fuse_relu:
                gm.graph.erase_node(next(iter(node.users)))
            gm.graph.erase_node(node)


def _concat_convs(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """One 1x1 Conv2d computing every conv of `convs` (same input) stacked along output channels."""
    first = convs[0]
    merged = nn.Conv2d(first.in_channels, sum(c.out_channels for c in convs), 1,
                       bias=any(c.bias is not None for c in convs),
                       device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        merged.weight.copy_(torch.cat([c.weight for c in convs]))
        if merged.bias is not None:
            merged.bias.copy_(torch.cat([c.bias if c.bias is not None else c.weight.new_zeros(c.out_channels)
                                         for c in convs]))
    return merged


# --------------------------------------------------------------------------------------------- backends


def _apply_backend(graph: fx.GraphModule, backend: str, example: Tensor) -> nn.Module | Callable[[Tensor], Tensor]:
    if backend == "eager":
        return graph
    if backend == "compile":
        return torch.compile(graph, options={"freezing": True})
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is deprecated in favour of torch.compile, but freeze + optimize_for_inference is still
        # the fastest CPU inference without a minute of compilation (bench/RESULTS.md).
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        frozen = torch.jit.freeze(torch.jit.trace(graph, example))
        return torch.jit.optimize_for_inference(frozen)
