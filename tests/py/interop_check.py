"""PyTorch / ONNX side of tests/test_interop.c. Every mode reads and writes files in DIR;
float arrays are raw little-endian float32 (.bin). Exits non-zero on any failure (a strict
load_state_dict that raises, a checker error), so the C test fails with it.

  export DIR ARCH N H          DIR/export.safetensors (barlow export) into the reference backbone
                               rebuilt as the README says, strict; eval forward of DIR/x.bin
                               (N,3,H,H) -> DIR/y_torch.bin
  torchvision DIR NAME N H     DIR/export.safetensors into torchvision.models.NAME() with
                               fc = Identity, strict; forward -> DIR/y_torch.bin
  twins DIR ARCH PROJ N H      DIR/export.safetensors (--with-projector) into the reference
                               main.py BarlowTwins(ARCH, PROJ), strict; backbone forward ->
                               DIR/y_torch.bin
  make DIR ARCH N H SEED       random backbone with random BN statistics, saved with
                               safetensors.torch to DIR/torch.safetensors (plus broken copies
                               missing/extra/shape.safetensors); eval forward of DIR/x.bin ->
                               DIR/y_torch.bin
  onnx DIR N1 N2 H FEAT        onnx.checker on DIR/model.onnx, input/output names and dims,
                               onnxruntime on DIR/x1.bin (N1) and DIR/x2.bin (N2) ->
                               DIR/y_onnx1.bin, DIR/y_onnx2.bin
  npy DIR N D                  numpy.load(DIR/features.npy): format 1.0, '<f4', C order,
                               shape (N, D) -> DIR/y_npy.bin
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))


def fail(msg):
    print("interop_check: " + msg, file=sys.stderr)
    sys.exit(1)


def read_np(path, n, h):
    a = np.fromfile(path, dtype="<f4")
    if a.size != n * 3 * h * h:
        fail("%s: %d floats, expected %d" % (path, a.size, n * 3 * h * h))
    return a.reshape(n, 3, h, h).copy()


def read_x(path, n, h):
    import torch
    return torch.from_numpy(read_np(path, n, h))


def write_y(path, y):
    np.ascontiguousarray(y.detach().numpy() if hasattr(y, "detach") else y, dtype="<f4").tofile(path)


def write_torch(d, net, x):
    """The network's output on x in float32 (y_torch.bin) and, from the same float32 weights
    and inputs, in float64 (y_torch64.bin, raw float64): the test judges barlow against
    float64 by PyTorch's own float32 error (tests/testutil.h, tu_parity_check)."""
    import torch
    with torch.no_grad():
        write_y(os.path.join(d, "y_torch.bin"), net(x))
        y64 = net.double()(x.double())
        np.ascontiguousarray(y64.numpy(), dtype="<f8").tofile(os.path.join(d, "y_torch64.bin"))
        net.float()


def readme_backbone(arch):
    """The backbone as the README tells a PyTorch user to build it: torchvision's resnet (our
    width-scaled twin for :w=F), fc = Identity, and for -cifar the two module changes."""
    import torch.nn as nn
    import bt_reference as R
    base, cifar, width = R.parse_arch(arch)
    net = R.make_backbone(base + (":w=%g" % width if width != 1.0 else ""))  # no -cifar here
    if cifar:
        w = net.conv1.out_channels
        net.conv1 = nn.Conv2d(3, w, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def load_strict(net, path):
    from safetensors.torch import load_file
    sd = load_file(path)
    net.load_state_dict(sd, strict=True)  # raises on any missing / unexpected / misshapen key
    return sd


def main():
    mode, d = sys.argv[1], sys.argv[2]
    a = sys.argv[3:]
    if mode not in ("onnx", "npy"):  # those two need no torch (its import is slow)
        import torch
        torch.set_num_threads(1)
    if mode == "export":
        arch, n, h = a[0], int(a[1]), int(a[2])
        net = readme_backbone(arch)
        sd = load_strict(net, os.path.join(d, "export.safetensors"))
        nbt = [k for k in sd if k.endswith("num_batches_tracked")]
        if not nbt or any(sd[k].dtype != torch.int64 or sd[k].dim() != 0 for k in nbt):
            fail("num_batches_tracked missing or not int64 scalars")
        net.eval()
        write_torch(d, net, read_x(os.path.join(d, "x.bin"), n, h))
    elif mode == "torchvision":
        import torchvision
        name, n, h = a[0], int(a[1]), int(a[2])
        net = getattr(torchvision.models, name)()
        net.fc = torch.nn.Identity()
        load_strict(net, os.path.join(d, "export.safetensors"))
        net.eval()
        write_torch(d, net, read_x(os.path.join(d, "x.bin"), n, h))
    elif mode == "twins":
        import bt_reference as R
        arch, proj, n, h = a[0], a[1], int(a[2]), int(a[3])
        model = R.BarlowTwins(arch, proj, batch_size=n)
        load_strict(model, os.path.join(d, "export.safetensors"))
        model.eval()
        write_torch(d, model.backbone, read_x(os.path.join(d, "x.bin"), n, h))
    elif mode == "make":
        from safetensors.torch import save_file
        arch, n, h, seed = a[0], int(a[1]), int(a[2]), int(a[3])
        torch.manual_seed(seed)
        net = readme_backbone(arch)
        with torch.no_grad():
            for mod in net.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0, 0.2)
                    mod.running_mean.normal_(0, 0.2)
                    mod.running_var.uniform_(0.5, 2.0)
                    mod.num_batches_tracked.fill_(7)
        sd = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_file(sd, os.path.join(d, "torch.safetensors"))
        bad = dict(sd)
        del bad["layer1.0.conv1.weight"]
        save_file(bad, os.path.join(d, "missing.safetensors"))
        bad = dict(sd)
        bad["layer5.0.conv1.weight"] = torch.zeros(3)
        save_file(bad, os.path.join(d, "extra.safetensors"))
        bad = dict(sd)
        bad["layer2.0.bn1.weight"] = torch.zeros(bad["layer2.0.bn1.weight"].numel() + 1)
        save_file(bad, os.path.join(d, "shape.safetensors"))
        net.eval()
        write_torch(d, net, read_x(os.path.join(d, "x.bin"), n, h))
    elif mode == "onnx":
        import onnx
        import onnxruntime as ort
        n1, n2, h, feat = int(a[0]), int(a[1]), int(a[2]), int(a[3])
        path = os.path.join(d, "model.onnx")
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        ops = {o.domain: o.version for o in model.opset_import}
        if ops.get("", 0) < 13:
            fail("opset %s < 13" % ops)
        g = model.graph
        if [i.name for i in g.input] != ["input"] or [o.name for o in g.output] != ["features"]:
            fail("graph inputs %s outputs %s" % ([i.name for i in g.input], [o.name for o in g.output]))
        idim = g.input[0].type.tensor_type.shape.dim
        odim = g.output[0].type.tensor_type.shape.dim
        if not idim[0].dim_param or idim[1].dim_value != 3 or not odim[0].dim_param or odim[1].dim_value != feat:
            fail("unexpected input/output dims: %s / %s" % (idim, odim))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for k, nb in ((1, n1), (2, n2)):
            x = read_np(os.path.join(d, "x%d.bin" % k), nb, h)
            (y,) = sess.run(["features"], {"input": x})
            if y.shape != (nb, feat):
                fail("onnxruntime output shape %s, expected %s" % (y.shape, (nb, feat)))
            write_y(os.path.join(d, "y_onnx%d.bin" % k), y)
    elif mode == "npy":
        n, dim = int(a[0]), int(a[1])
        path = os.path.join(d, "features.npy")
        with open(path, "rb") as f:
            ver = np.lib.format.read_magic(f)
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            data_off = f.tell()
        if ver != (1, 0) or shape != (n, dim) or fortran or dtype != np.dtype("<f4") or data_off % 64:
            fail("npy header: version %s shape %s fortran %s dtype %s data at %d"
                 % (ver, shape, fortran, dtype, data_off))
        y = np.load(path)
        if y.dtype != np.float32 or y.shape != (n, dim) or not y.flags["C_CONTIGUOUS"]:
            fail("numpy.load gave %s %s" % (y.dtype, y.shape))
        write_y(os.path.join(d, "y_npy.bin"), y)
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    main()
