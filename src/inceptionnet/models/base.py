"""The model contract every registered network follows (docs/design.md and the README's Python section)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputSizeError


class InceptionClassifier(nn.Module):
    """Base class: plain-Tensor forward, explicit aux logits, input checks, head replacement.

    Subclasses implement `forward_head(x, with_aux) -> (logits, aux_list)` and list their linear
    classifier layers (dotted module names) in `classifier_names`; aux heads are listed in
    `aux_head_names` and must only exist when built with `aux_logits=True`. `min_input_size` is the
    smallest input side the network takes. These two facts are the class's (or, where they depend on the
    constructor's arguments, `min_input_for` / `aux_heads_for` say how); a model's `ModelSpec` reads them
    from here.

    Features, timm-style: a subclass lists its trunk in `feature_layers()` (named layers run in order
    after `prepare_input`) and its stages in `feature_info` (one dict per stage: `num_chs`, `reduction`
    (total stride) and `module`, the layer whose output ends the stage). `forward_features` and
    `forward_intermediates` are built from these.
    """

    classifier_names: tuple[str, ...] = ()
    aux_head_names: tuple[str, ...] = ()
    min_input_size: int
    feature_info: list[dict] = []

    def __init__(self, num_classes: int, in_chans: int, aux_logits: bool, min_input_size: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        if min_input_size is not None:  # an architecture whose minimum depends on its arguments
            self.min_input_size = min_input_size
        self.aux_logits = aux_logits

    @classmethod
    def min_input_for(cls, **arch_kwargs) -> int:
        """The smallest input side of `cls(**arch_kwargs)`: the class's `min_input_size` unless a subclass
        whose minimum depends on its arguments says otherwise."""
        return cls.min_input_size

    @classmethod
    def aux_heads_for(cls, **arch_kwargs) -> tuple[str, ...]:
        """The aux heads `cls(**arch_kwargs)` can build: the class's `aux_head_names` unless a subclass says."""
        return cls.aux_head_names

    def forward(self, x: Tensor, with_aux: bool = False):
        """(N, C, H, W) -> (N, num_classes) logits, or `(logits, aux_tuple)` if `with_aux`."""
        self.check_input(x)
        logits, aux = self.forward_head(x, with_aux and self.aux_logits)
        if with_aux:
            return logits, tuple(aux)
        return logits

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def feature_layers(self) -> list[tuple[str, Callable[[Tensor], Tensor]]]:
        """The trunk as (name, layer) pairs, run in order: the last one gives the final feature map."""
        raise NotImplementedError

    def prepare_input(self, x: Tensor) -> Tensor:
        """What the model does to its input before the first layer (nothing, unless a subclass says)."""
        return x

    def forward_trunk(self, x: Tensor, taps: Mapping[str, Callable[[Tensor], Tensor]] | None = None,
                      ) -> tuple[Tensor, list[Tensor]]:
        """Run the trunk on (N, C, H, W) input; after each layer named in `taps`, `taps[name]` is applied
        to its output (aux heads). Returns the final feature map and the tap results, in trunk order."""
        taps = taps or {}
        x = self.prepare_input(x)
        tapped = []
        for name, layer in self.feature_layers():
            x = layer(x)
            if name in taps:
                tapped.append(taps[name](x))
        return x, tapped

    def forward_features(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> the last feature map before pooling, (N, feature_info[-1]["num_chs"], H', W')."""
        self.check_input(x)
        return self.forward_trunk(x)[0]

    def forward_intermediates(self, x: Tensor, indices: int | Sequence[int] | None = None,
                              intermediates_only: bool = False, stop_early: bool = False):
        """The outputs of the stages in `feature_info`: `indices` selects them (an int n: the last n;
        a sequence: those positions, negative ones counted from the end; None: all).

        Returns `(final_features, [stage maps])`, or only the list with `intermediates_only`;
        `stop_early` stops the trunk after the last selected stage (then the final map is that one).
        Each stage map is (N, num_chs, ~H/reduction, ~W/reduction).
        """
        self.check_input(x)
        selected = stage_indices(len(self.feature_info), indices)
        wanted = {self.feature_info[i]["module"]: i for i in selected}
        outputs: dict[int, Tensor] = {}
        x = self.prepare_input(x)
        for name, layer in self.feature_layers():
            x = layer(x)
            if name in wanted:
                outputs[wanted[name]] = x
                if stop_early and len(outputs) == len(wanted):
                    break
        stages = [outputs[i] for i in selected]
        return stages if intermediates_only else (x, stages)

    def check_input(self, x: Tensor) -> None:
        """Raise `InputSizeError` for a tensor this model cannot take, before any layer sees it."""
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return
        if x.dim() != 4:
            raise InputSizeError(f"{type(self).__name__} expects a 4-D (N, C, H, W) batch, got shape "
                                 f"{tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise InputSizeError(f"{type(self).__name__} was built for {self.in_chans} input channels, "
                                 f"got {x.shape[1]}")
        h, w = x.shape[-2:]
        if h < self.min_input_size or w < self.min_input_size:
            raise InputSizeError(f"{type(self).__name__} needs inputs of at least {self.min_input_size}x"
                                 f"{self.min_input_size} pixels, got {h}x{w}")

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every classifier layer (main and aux heads) with a fresh one of `num_classes`
        outputs; 0 gives an identity head that returns pooled features."""
        for name in self.classifier_names:
            parent_name, _, child = name.rpartition(".")
            parent = self.get_submodule(parent_name) if parent_name else self
            old = getattr(parent, child, None)
            if old is None:  # an aux head of a model built without aux heads
                continue
            new = nn.Linear(old.in_features, num_classes) if num_classes > 0 else nn.Identity()
            if num_classes > 0:
                init_linear(new)
            setattr(parent, child, new.to(next(self.parameters()).device))
        self.num_classes = num_classes

    def aux_parameters(self):
        """Parameters of the aux heads (empty when built without them)."""
        for name in self.aux_head_names:
            module = getattr(self, name, None)
            if module is not None:
                yield from module.parameters()



def is_aux_key(model: nn.Module, key: str) -> bool:
    """True when the state_dict key `key` belongs to one of `model`'s auxiliary heads."""
    return any(key.startswith(name + ".") for name in getattr(model, "aux_head_names", ()))


def check_aux_grid(model: InceptionClassifier, grid: Tensor, min_grid: int, min_input_size: int) -> None:
    """Raise `InputSizeError` when the grid an aux head reads is smaller than `min_grid` (naming
    `min_input_size`, the model input that gives a large enough grid)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return
    if min(grid.shape[-2:]) < min_grid:
        raise InputSizeError(f"{type(model).__name__} aux logits need inputs of at least {min_input_size}x"
                             f"{min_input_size} pixels")


class StagedInception(InceptionClassifier):
    """The forward shared by v3, v4 and Inception-ResNet: the trunk (`feature_layers()`), the optional
    aux head (attribute `AuxLogits`, None without aux; an `InceptionAux`) on the output of the layer named
    `aux_tap`, global average pooling, dropout `head_drop` and the linear layer named `head_name`.
    The classifier layers are `head_name` and each aux head's `fc`. The TF stem's VALID convolutions and
    pools need 75x75 inputs, the aux head 299x299. (N, C, H, W) -> (N, num_classes).
    """

    head_name = "fc"
    stem_names: tuple[str, ...] = ()
    aux_tap = ""
    aux_min_input_size = 299
    min_input_size = 75
    AuxLogits: nn.Module | None

    def __init__(self, num_classes: int, in_chans: int, aux_logits: bool) -> None:
        super().__init__(num_classes, in_chans, aux_logits)
        self.classifier_names = (self.head_name, *(f"{name}.fc" for name in self.aux_head_names if aux_logits))

    def add_stem(self, layers: Sequence[nn.Module]) -> None:
        """Register `layers` (the shared TF stem, or its start) under the first `len(layers)` of `stem_names`."""
        for name, layer in zip(self.stem_names[:len(layers)], layers, strict=True):
            self.add_module(name, layer)

    def _aux_head(self, grid: Tensor) -> Tensor:
        check_aux_grid(self, grid, self.AuxLogits.min_grid, self.aux_min_input_size)
        return self.AuxLogits(grid)

    def forward_head(self, x: Tensor, with_aux: bool) -> tuple[Tensor, list[Tensor]]:
        taps = {self.aux_tap: self._aux_head} if with_aux and self.AuxLogits is not None else {}
        x, aux = self.forward_trunk(x, taps)
        x = self.head_drop(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return getattr(self, self.head_name)(x), aux


def stage_info(*stages: tuple[str, int, int]) -> list[dict]:
    """`feature_info` from (module, channels, reduction) triples."""
    return [{"num_chs": c, "reduction": r, "module": m} for m, c, r in stages]


def stage_indices(n_stages: int, indices: int | Sequence[int] | None) -> list[int]:
    """Stage positions (0..n_stages-1, sorted) from timm-style `indices`: None (all), an int n (the last
    n) or a sequence of positions (negative from the end); a `ConfigError` for one out of range."""
    if indices is None:
        return list(range(n_stages))
    if isinstance(indices, int):
        if not 0 < indices <= n_stages:
            raise ConfigError(f"indices={indices}: the model has {n_stages} feature stages")
        return list(range(n_stages - indices, n_stages))
    chosen = []
    for i in indices:
        if not -n_stages <= i < n_stages:
            raise ConfigError(f"feature index {i} is out of range: the model has {n_stages} stages (0-{n_stages - 1})")
        chosen.append(i % n_stages)
    return sorted(set(chosen))


def init_linear(layer: nn.Linear, std: float = 0.01) -> None:
    nn.init.normal_(layer.weight, 0.0, std)
    nn.init.zeros_(layer.bias)


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convolutions, unit BN, small normal linears: torch-only and fast."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_linear(m)
