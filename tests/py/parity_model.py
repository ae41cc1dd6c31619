"""PyTorch side of tests/test_parity_model.c, in two calls.

usage: parity_model.py make DIR ARCH PROJECTOR N H STEPS
         Builds main.py's BarlowTwins (tools/bt_reference.py) with random BN affine
         parameters; writes DIR/init.safetensors (barlow names, float32) and
         DIR/inputs.safetensors (x1_s, x2_s for each step, float32).
       parity_model.py ref DIR ARCH PROJECTOR N H STEPS LR_BATCH
         Reads DIR/decisions.safetensors, barlow's own ReLU and max-pool decisions of every
         step (see below), and runs the reference twice from the same float32 weights and
         inputs: in float64 (the reference the test judges against) and in float32 (PyTorch's
         own float32 result, whose distance from float64 tells the test what float32 allows).
         For each precision P in (f64, f32):
          - one forward/backward: DIR/grads_P.safetensors ("grad.<name>"), loss parts in
            DIR/ref.json;
          - STEPS LARS steps with the reference schedule, the learning rate scaled as for a
            batch of LR_BATCH (the first step's rate is 0; the others move the weights as much
            as a real run's do): per-step losses in DIR/ref.json and the final parameters,
            buffers and momentum ("momentum.<name>") in DIR/final_P.safetensors.

Why barlow's decisions: a ReLU input or a max-pool window within float32 rounding of its kink
(x = 0, a near tie) falls on either side depending on the order of float sums, and one element
on the other side moves a whole weight gradient by |dy * x|, far above rounding. A network of
a million activations has such elements by chance, in PyTorch's float32 and in barlow's, each
time elsewhere. So both references apply barlow's mask ("relu.S.V.K": packed bits, step S, view
V, K-th ReLU in forward order) and barlow's argmax ("pool.S.V.K", int32 indices into each input
plane) instead of deciding again. What remains between the three results is rounding alone.
The decisions themselves are checked here against float64's own: every ReLU whose sign differs
must have |x| < TAU * rms(x) there, and every max-pool index must select a value within
TAU * rms(x) of the window's float64 maximum; otherwise this script exits with status 3. At
step 0 the three runs start from the same weights, so only rounding ties may differ: TAU = 1e-3
TAU_LATER = 0.1
(seen: up to 3.5e-4). At later steps the weights themselves differ by the trajectory's float32
divergence (in PyTorch's float32 as in barlow's, and bounded by the test's comparisons of
losses, parameters and momentum), so the check there only catches a mask that is not a tie at
all: TAU_LATER = 0.1.
"""
import json
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import bt_reference as ref  # noqa: E402
from safetensors.numpy import load_file as load_np  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

TAU = 1e-3
TAU_LATER = 0.1


def strip(name):
    return name[len("backbone."):] if name.startswith("backbone.") else name


class Decisions:
    """barlow's decisions in forward order; `check` compares them with the input's own."""

    def __init__(self, tensors):
        self.t = tensors
        self.step = self.view = 0
        self.k = {"relu": 0, "pool": 0}
        self.check = False
        # (disagreements, worst |x|/rms) at step 0 and at later steps
        self.worst = {(k, late): (0, 0.0) for k in ("relu", "pool") for late in (0, 1)}

    def start(self, step, view):
        self.step, self.view = step, view
        self.k = {"relu": 0, "pool": 0}

    def take(self, kind):
        name = "%s.%d.%d.%d" % (kind, self.step, self.view, self.k[kind])
        self.k[kind] += 1
        if name not in self.t:
            sys.exit("parity_model.py: barlow's decisions lack %s (forward orders differ?)" % name)
        return name, self.t[name]

    def note(self, kind, count, rel):
        key = (kind, int(self.step > 0))
        c, w = self.worst[key]
        self.worst[key] = (c + count, max(w, rel))
        if os.environ.get("PARITY_DEBUG"):
            print("  %s step %d view %d #%d: %d differ, worst %.3g" % (kind, self.step, self.view, self.k[kind] - 1, count, rel))


class BarlowReLU(nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, x):
        name, bits = self.dec.take("relu")
        n = x.numel()
        mask = np.unpackbits(bits, count=n) if bits.size * 8 >= n else None
        if mask is None:
            sys.exit("parity_model.py: %s holds %d bits, the tensor %d" % (name, bits.size * 8, n))
        m = torch.from_numpy(mask.astype(np.float64)).to(x.dtype).view_as(x)
        if self.dec.check:
            own = (x.detach() > 0).to(x.dtype)
            dis = own != m
            if dis.any():
                rms = x.detach().pow(2).mean().sqrt().item()
                self.dec.note("relu", int(dis.sum()), x.detach()[dis].abs().max().item() / rms)
        return x * m  # = relu(x) where the decisions agree; gradient dy * mask


class BarlowMaxPool(nn.Module):
    def __init__(self, dec, pool):
        super().__init__()
        self.dec, self.pool = dec, pool

    def forward(self, x):
        name, idx = self.dec.take("pool")
        own, _ = nn.functional.max_pool2d(x, self.pool.kernel_size, self.pool.stride,
                                          self.pool.padding, return_indices=True)
        if tuple(idx.shape) != tuple(own.shape):
            sys.exit("parity_model.py: %s has shape %s, the pool output %s" % (name, idx.shape, own.shape))
        i = torch.from_numpy(idx.astype(np.int64))
        y = x.flatten(2).gather(2, i.flatten(2)).view_as(own)
        if self.dec.check:
            gap = (own - y).detach()
            if (gap != 0).any():
                rms = x.detach().pow(2).mean().sqrt().item()
                self.dec.note("pool", int((gap != 0).sum()), gap.abs().max().item() / rms)
        return y  # gradient scattered to barlow's argmax


def build(arch, proj, n, init, dt, dec):
    m = ref.BarlowTwins(arch, proj, n)
    ref.load_from_barlow(m, init)
    if dec is not None:
        for parent in list(m.modules()):
            for cname, child in list(parent.named_children()):
                if isinstance(child, nn.ReLU):
                    setattr(parent, cname, BarlowReLU(dec))
                elif isinstance(child, nn.MaxPool2d):
                    setattr(parent, cname, BarlowMaxPool(dec, child))
    m = m.to(dt)
    m.train()
    return m


def views(m, dec, s, x1, x2, parts):
    """The loss of one step, each view's forward under its own decisions."""
    orig = m.backbone.forward

    def fwd(x, _count=[0]):
        dec.start(s, _count[0])
        _count[0] += 1
        return orig(x)

    m.backbone.forward = fwd  # forward_parts runs backbone(y1) and then backbone(y2)
    try:
        return m.forward_parts(x1, x2) if parts else m(x1, x2)
    finally:
        m.backbone.forward = orig


def make(d, arch, proj, n, h, steps):
    torch.manual_seed(1234)
    model = ref.BarlowTwins(arch, proj, n)
    with torch.no_grad():  # non-trivial BN affine so no gradient path is zero
        for name, p in model.named_parameters():
            if p.ndim == 1:
                if not name.endswith("weight"):
                    p.copy_(0.1 * torch.randn_like(p))
                elif name.startswith("backbone.layer") and name.endswith(".bn3.weight"):
                    # Bottleneck branches end in small gains (zero_init_residual starts them at
                    # 0): with gains near 1, 16 blocks on a small batch make the network chaotic.
                    p.copy_(0.1 * torch.rand_like(p) + 0.1)
                else:
                    p.copy_(torch.rand_like(p) + 0.5)
    save_file(ref.state_for_barlow(model), os.path.join(d, "init.safetensors"))
    xs = {}
    for s in range(steps):
        xs["x1_%d" % s] = torch.randn(n, 3, h, h)
        xs["x2_%d" % s] = torch.randn(n, 3, h, h)
    save_file(xs, os.path.join(d, "inputs.safetensors"))


def reference(d, arch, proj, n, h, steps, lr_batch):
    init = load_file(os.path.join(d, "init.safetensors"))
    xs = load_file(os.path.join(d, "inputs.safetensors"))
    dec = Decisions(load_np(os.path.join(d, "decisions.safetensors")))
    out = {}
    for tag, dt in (("f64", torch.float64), ("f32", torch.float32)):
        dec.check = tag == "f64"
        res = {}
        m = build(arch, proj, n, init, dt, dec)
        loss, on, off = views(m, dec, 0, xs["x1_0"].to(dt), xs["x2_0"].to(dt), True)
        loss.backward()
        res["loss"], res["on_diag"], res["off_diag"] = loss.item(), on.item(), off.item()
        save_file({"grad." + strip(nm): p.grad.detach().clone() for nm, p in m.named_parameters()},
                  os.path.join(d, "grads_%s.safetensors" % tag))

        m = build(arch, proj, n, init, dt, dec)  # fresh: BN running statistics start over too
        opt = ref.make_optimizer(m, weight_decay=1e-6)
        traj = []
        for s in range(steps):
            ref.adjust_learning_rate(opt, s, steps_per_epoch=1, epochs=10, batch_size=lr_batch,
                                     lr_weights=0.2, lr_biases=0.0048, warmup_epochs=2)
            opt.zero_grad()
            loss = views(m, dec, s, xs["x1_%d" % s].to(dt), xs["x2_%d" % s].to(dt), False)
            loss.backward()
            opt.step()
            traj.append(loss.item())
        res["trajectory"] = traj
        final = ref.state_for_barlow(m)
        for nm, p in m.named_parameters():
            final["momentum." + strip(nm)] = opt.state[p]["mu"].detach().clone()
        save_file(final, os.path.join(d, "final_%s.safetensors" % tag))
        out[tag] = res
    out["decisions"] = {"%s%s" % (k, "_later" if late else ""): {"differ": c, "worst_rel": w}
                        for (k, late), (c, w) in dec.worst.items()}
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(out, f)
    for (kind, late), (c, w) in dec.worst.items():
        tau = TAU_LATER if late else TAU
        if w >= tau:
            print("parity_model.py: barlow's %s decisions at %s differ from float64's at %d "
                  "elements, one at |x| = %.3g * rms(x) (> %g: not a rounding tie)"
                  % (kind, "steps > 0" if late else "step 0", c, w, tau))
            sys.exit(3)


def main():
    torch.set_num_threads(2)
    mode, d, arch, proj = sys.argv[1:5]
    n, h, steps = (int(a) for a in sys.argv[5:8])
    if mode == "make":
        make(d, arch, proj, n, h, steps)
    elif mode == "ref":
        reference(d, arch, proj, n, h, steps, int(sys.argv[8]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
