#!/usr/bin/python3
"""Converts PyTorch weights (.pth / .pt) to a safetensors file with torchvision names, for
`barlow ... --init-from FILE` (and `barlow embed --weights FILE`).

Accepted inputs: a plain state_dict; a dict holding it under "model", "state_dict" or
"model_state_dict" (training checkpoints such as the reference main.py's checkpoint.pth,
whose "model" entry is the whole BarlowTwins module); the reference's final resnet50.pth
(the backbone's state_dict). Prefixes "module." (DataParallel / DDP) and "backbone." are
stripped; with --backbone-only (default) the projector.* / bn.* tensors of a BarlowTwins
state_dict and torchvision's fc.* are dropped. Tensors are stored contiguous, in their own
dtype (num_batches_tracked stays int64).

usage: /usr/bin/python3 tools/pth_to_safetensors.py IN.pth OUT.safetensors [--arch ARCH]
       [--keep-head]
  --arch ARCH   record the architecture (e.g. resnet50) in the metadata, so barlow can build
                the model without being told
  --keep-head   keep fc.*, projector.* and bn.* tensors
"""
import argparse
import sys

import torch
from safetensors.torch import save_file


def find_state_dict(obj):
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        sys.exit("pth_to_safetensors: the file holds a %s, not a state_dict" % type(obj).__name__)
    for key in ("state_dict", "model", "model_state_dict"):
        if key in obj and isinstance(obj[key], (dict, torch.nn.Module)):
            return find_state_dict(obj[key])
    if not any(torch.is_tensor(v) for v in obj.values()):
        sys.exit("pth_to_safetensors: no tensors found (keys: %s)" % ", ".join(map(str, list(obj)[:10])))
    return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--arch", default=None)
    ap.add_argument("--keep-head", action="store_true")
    args = ap.parse_args()
    obj = torch.load(args.src, map_location="cpu")
    sd = find_state_dict(obj)
    out = {}
    for name, t in sd.items():
        if not torch.is_tensor(t):
            continue
        for prefix in ("module.", "backbone."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        if not args.keep_head and name.split(".")[0] in ("fc", "projector", "bn"):
            continue
        if name in out:
            sys.exit("pth_to_safetensors: two tensors map to %s" % name)
        out[name] = t.detach().contiguous().clone()
    if not out:
        sys.exit("pth_to_safetensors: nothing left to write")
    meta = {"format": "torchvision-state-dict", "source": args.src}
    if args.arch:
        meta["arch"] = args.arch
    save_file(out, args.dst, metadata=meta)
    print("wrote %s: %d tensors" % (args.dst, len(out)))


if __name__ == "__main__":
    main()
