"""`inceptionnet convert`: turn a torchvision/timm/cadene state_dict into our weights file, or ours
into a peer's layout (`--to`). The class count and aux heads are read from the input file."""

from __future__ import annotations

import argparse

OUT_SUFFIXES = (".pt", ".pth", ".safetensors")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("convert", help="convert weights between torchvision/timm/cadene and inceptionnet layouts",
                       description="Read IN (a state_dict file or URL in the --from layout), load it into MODEL "
                                   "and write OUT in the --to layout (.pt/.pth: torch.save, .safetensors), with "
                                   "the model metadata that eval and predict read (a .pt in a peer's layout "
                                   "stays the plain state_dict the peer loads).")
    p.add_argument("input", metavar="IN", help="weights file or URL (http, https, file)")
    p.add_argument("output", metavar="OUT", help="file to write (.pt, .pth or .safetensors)")
    p.add_argument("--model", required=True, metavar="NAME", help="a registered model (see `inceptionnet list`)")
    p.add_argument("--from", dest="source", default="inceptionnet", metavar="SRC",
                   help="layout of IN: inceptionnet (default), torchvision, timm or cadene")
    p.add_argument("--to", dest="target", default="inceptionnet", metavar="DST",
                   help="layout of OUT: inceptionnet (default), torchvision, timm or cadene")
    return p


def infer_head(model_name: str, state: dict, source: str) -> tuple[int | None, bool]:
    """(classes, has aux weights) of a `source`-layout state_dict for `model_name`, read from the
    main classifier's weight shape and the aux heads' keys; classes is None if the file has no head."""
    from ..models import create_model, get_spec
    from ..weights import convert_state_dict

    spec = get_spec(model_name)
    probe = create_model(model_name, aux_logits=bool(spec.aux_heads))
    ours = convert_state_dict(probe, state, source)
    head = ours.get(f"{probe.classifier_names[0]}.weight")
    has_aux = any(k.split(".")[0] in probe.aux_head_names for k in ours)
    return (None if head is None else head.shape[0]), has_aux


def run(args: argparse.Namespace) -> int:
    from ..artifacts import save_weights
    from ..errors import ConfigError
    from ..models import create_model, get_spec
    from ..weights import load_state_dict, read_state_dict

    if not args.output.endswith(OUT_SUFFIXES):
        raise ConfigError(f"OUT must end in {', '.join(OUT_SUFFIXES)}: {args.output}")
    layouts = ("inceptionnet", *get_spec(args.model).peers)
    for option, layout in (("--from", args.source), ("--to", args.target)):
        if layout not in layouts:
            raise ConfigError(f"{option} {layout}: model {args.model!r} converts only between {', '.join(layouts)}")
    state = read_state_dict(args.input)
    num_classes, has_aux = infer_head(args.model, state, args.source)
    model = create_model(args.model, num_classes=num_classes or 1000, aux_logits=has_aux)
    load_state_dict(model, state, args.source, strict=True, origin=args.input)
    save_weights(model, args.output, source=args.target)
    aux = "with aux heads" if has_aux else "no aux heads"
    print(f"wrote {args.output}: {args.model}, {model.num_classes} classes, {aux}, "
          f"{args.source} -> {args.target} layout")
    return 0
