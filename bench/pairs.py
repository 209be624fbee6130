"""Which of our models is compared with which peer, at which image size (shared by infer.py and train.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

import inceptionnet
from common import add_common_args, machine_header
from inceptionnet.runtime import DTYPES, set_threads
from peak import gemm_size, measure_peak


@dataclass(frozen=True)
class Pair:
    """Our registered model(s) and the peer implementations of the same network, at `size` pixels.

    `ours[0]` is the one the ratio is taken against (the same architecture as the peers); any
    further names are shown alongside (the paper's GoogLeNet next to the torchvision-compatible one).
    """

    size: int
    ours: tuple[str, ...]
    peers: dict[str, Callable[[], nn.Module]]


def _torchvision(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, aux_logits=False, init_weights=False, **kwargs)
    return build


def _timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)
    return build


PAIRS: dict[str, Pair] = {
    "googlenet": Pair(224, ("googlenet_tv", "googlenet"), {"torchvision googlenet": _torchvision("googlenet")}),
    "inception_v3": Pair(299, ("inception_v3",), {"torchvision inception_v3": _torchvision("inception_v3"),
                                                  "timm inception_v3": _timm("inception_v3")}),
    "inception_v4": Pair(299, ("inception_v4",), {"timm inception_v4": _timm("inception_v4")}),
    "inception_resnet_v2": Pair(299, ("inception_resnet_v2",),
                                {"timm inception_resnet_v2": _timm("inception_resnet_v2")}),
}


def ours(name: str) -> nn.Module:
    """Our model without aux heads (the peers are built without them too)."""
    return inceptionnet.create_model(name, aux_logits=False)


def run_pairs(description: str, run_pair: Callable[[str, argparse.Namespace, float], list[str]],
              default_models: str, configs: tuple[str, ...], with_profile: bool = False) -> None:
    """The command line shared by infer.py and train.py: parse the options, measure the GEMM peak of the chosen
    precision (unless --peak gives it), run `run_pair(key, args, peak)` for each model pair and print the
    summary lines it returns. `with_profile` offers --profile (a torch.profiler table of ours and the peer)."""
    parser = argparse.ArgumentParser(description=description)
    add_common_args(parser)
    parser.add_argument("--models", default=default_models, help=f"comma-separated subset of {', '.join(PAIRS)}")
    parser.add_argument("--configs", default=",".join(configs), help="peer configurations to try")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--peak", type=float, help="GEMM peak in GFLOP/s (default: measure it now with peak.py)")
    if with_profile:
        parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of ours and the peer")
    args = parser.parse_args()
    args.configs = args.configs.split(",")
    set_threads(args.threads)
    dtype = DTYPES[args.precision]
    peak = args.peak or measure_peak(dtype, gemm_size(dtype))
    print(machine_header())
    print(f"measured GEMM peak ({args.precision}): {peak:.1f} GFLOP/s", flush=True)
    lines = []
    for key in args.models.split(","):
        lines += run_pair(key, args, peak)
    print("\nsummary\n" + "\n".join(lines))
