"""PyTorch side of tests/test_parity_model.c.

usage: parity_model.py DIR ARCH PROJECTOR N H STEPS [f32|f64]
The reference runs in float32 (default) or float64 from the same float32 weights and inputs.
Builds main.py's BarlowTwins (tools/bt_reference.py) with random BN affine parameters, writes
DIR/init.safetensors (barlow names) and DIR/inputs.safetensors (x1_s, x2_s for each step), then
 - one forward/backward: DIR/grads.safetensors ("grad.<name>") and loss parts in DIR/ref.json;
 - STEPS LARS steps with the reference schedule: per-step losses in DIR/ref.json and the final
   parameters, buffers and momentum ("momentum.<name>") in DIR/final.safetensors.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import bt_reference as ref  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

d, arch, proj, n, h, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
dt = torch.float64 if len(sys.argv) > 7 and sys.argv[7] == "f64" else torch.float32
torch.set_num_threads(2)
torch.manual_seed(1234)
model = ref.BarlowTwins(arch, proj, n)
with torch.no_grad():  # non-trivial BN affine so no gradient path is zero
    for name, p in model.named_parameters():
        if p.ndim == 1:
            if not name.endswith("weight"):
                p.copy_(0.1 * torch.randn_like(p))
            elif name.startswith("backbone.layer") and name.endswith(".bn3.weight"):
                # Bottleneck branches end in small gains (zero_init_residual starts them at 0):
                # with gains near 1, 16 blocks on a 4-image batch make float32 itself
                # unreliable (PyTorch's float32 and float64 gradients differ by ~20%).
                p.copy_(0.1 * torch.rand_like(p) + 0.1)
            else:
                p.copy_(torch.rand_like(p) + 0.5)
model.train()
save_file(ref.state_for_barlow(model), os.path.join(d, "init.safetensors"))
model = model.to(dt)
xs = {}
for s in range(steps):
    xs["x1_%d" % s] = torch.randn(n, 3, h, h)
    xs["x2_%d" % s] = torch.randn(n, 3, h, h)
save_file(xs, os.path.join(d, "inputs.safetensors"))

out = {}
loss, on, off = model.forward_parts(xs["x1_0"].to(dt), xs["x2_0"].to(dt))
loss.backward()
out["loss"], out["on_diag"], out["off_diag"] = loss.item(), on.item(), off.item()
grads = {}
for name, p in model.named_parameters():
    nm = name[len("backbone."):] if name.startswith("backbone.") else name
    grads["grad." + nm] = p.grad.detach().clone()
save_file(grads, os.path.join(d, "grads.safetensors"))

# Fresh copy of the initial state for the LARS trajectory.
model2 = ref.BarlowTwins(arch, proj, n)
from safetensors.torch import load_file  # noqa: E402
ref.load_from_barlow(model2, load_file(os.path.join(d, "init.safetensors")))
model2 = model2.to(dt)
model2.train()
opt = ref.make_optimizer(model2, weight_decay=1e-6)
traj = []
for s in range(steps):
    ref.adjust_learning_rate(opt, s, steps_per_epoch=1, epochs=10, batch_size=n,
                             lr_weights=0.2, lr_biases=0.0048, warmup_epochs=2)
    opt.zero_grad()
    loss = model2(xs["x1_%d" % s].to(dt), xs["x2_%d" % s].to(dt))
    loss.backward()
    opt.step()
    traj.append(loss.item())
out["trajectory"] = traj
final = ref.state_for_barlow(model2)
for name, p in model2.named_parameters():
    nm = name[len("backbone."):] if name.startswith("backbone.") else name
    final["momentum." + nm] = opt.state[p]["mu"].detach().clone()
save_file(final, os.path.join(d, "final.safetensors"))
with open(os.path.join(d, "ref.json"), "w") as f:
    json.dump(out, f)
