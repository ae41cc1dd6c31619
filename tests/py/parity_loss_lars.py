"""PyTorch reference for tests/test_loss.c and tests/test_lars.c: the Barlow Twins loss, the
LARS optimizer and the learning-rate schedule as written in facebookresearch/barlowtwins
main.py, run on inputs the C tests write, with results written back for comparison.

Modes:
  loss DIR N D LAMBDA [DIR N D LAMBDA ...]
                               (one torch start-up for several cases) reads DIR/z1.bin, DIR/z2.bin (N*D float32); writes
                               DIR/ref_loss.txt ("loss on_diag off_diag"), DIR/ref_dz1.bin,
                               DIR/ref_dz2.bin, DIR/ref_rm.bin, DIR/ref_rv.bin (float64), and
                               the same computed in float32 as DIR/peer_* (.bin float32)
  sched SPE EPOCHS WARMUP BS LRW LRB STEP...
                               prints "lr_weights lr_biases" per step (%.17g)
  lars DIR NSTEPS SPE EPOCHS WARMUP BS LRW LRB WD MOM ETA
                               reads DIR/spec.txt (per line: name ndim shape... offset numel),
                               DIR/params0.bin (total float32), DIR/grads.bin (NSTEPS*total
                               float32); runs NSTEPS steps with the schedule from step 0;
                               writes DIR/params.bin, DIR/mom.bin (total float32), and the
                               same run in float64 as DIR/params64.bin, DIR/mom64.bin
"""
import math
import os
import sys

def schedule(step, spe, epochs, warmup_epochs, batch_size, lrw, lrb):
    """The reference's adjust_learning_rate, with the warm-up length (10 there) a parameter."""
    max_steps = epochs * spe
    warmup_steps = warmup_epochs * spe
    base_lr = batch_size / 256
    if step < warmup_steps:
        lr = base_lr * step / warmup_steps
    else:
        step -= warmup_steps
        max_steps -= warmup_steps
        q = 0.5 * (1 + math.cos(math.pi * step / max_steps))
        end_lr = base_lr * 0.001
        lr = base_lr * q + end_lr * (1 - q)
    return lr * lrw, lr * lrb


def mode_sched(args):
    spe, epochs, warmup, bs = (int(a) for a in args[:4])
    lrw, lrb = float(args[4]), float(args[5])
    for s in args[6:]:
        print('%.17g %.17g' % schedule(int(s), spe, epochs, warmup, bs, lrw, lrb))


if __name__ == '__main__' and sys.argv[1:2] == ['sched']:
    mode_sched(sys.argv[2:])  # pure Python: no need to pay for importing torch
    sys.exit(0)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn, optim  # noqa: E402

torch.set_num_threads(1)


def off_diagonal(x):
    # return a flattened view of the off-diagonal elements of a square matrix
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class BTLoss(nn.Module):
    """The loss part of the reference BarlowTwins module (backbone and projector left out)."""

    def __init__(self, D, lambd):
        super().__init__()
        self.lambd = lambd
        self.bn = nn.BatchNorm1d(D, affine=False)

    def forward(self, z1, z2):
        batch_size = z1.shape[0]
        c = self.bn(z1).T @ self.bn(z2)
        c.div_(batch_size)
        on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
        off_diag = off_diagonal(c).pow_(2).sum()
        loss = on_diag + self.lambd * off_diag
        return loss, on_diag, off_diag


# The reference's LARS, from the shared copy of main.py's code.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from bt_reference import LARS  # noqa: E402


def mode_loss(d, N, D, lambd):
    # Twice from the same float32 inputs: float64 (ref_*, the reference, .bin as float64) and
    # float32 (peer_*, PyTorch's own float32 result, .bin as float32).
    for tag, dt, ft in (('ref', torch.float64, '<f8'), ('peer', torch.float32, '<f4')):
        z1 = np.fromfile(os.path.join(d, 'z1.bin'), dtype='<f4').reshape(N, D)
        z2 = np.fromfile(os.path.join(d, 'z2.bin'), dtype='<f4').reshape(N, D)
        z1 = torch.tensor(z1, dtype=dt, requires_grad=True)
        z2 = torch.tensor(z2, dtype=dt, requires_grad=True)
        m = BTLoss(D, lambd).to(dt).train()
        loss, on, off = m(z1, z2)
        loss.backward()
        with open(os.path.join(d, tag + '_loss.txt'), 'w') as f:
            f.write('%.17g %.17g %.17g\n' % (loss.item(), on.item(), off.item()))
        z1.grad.numpy().astype(ft).tofile(os.path.join(d, tag + '_dz1.bin'))
        z2.grad.numpy().astype(ft).tofile(os.path.join(d, tag + '_dz2.bin'))
        m.bn.running_mean.numpy().astype(ft).tofile(os.path.join(d, tag + '_rm.bin'))
        m.bn.running_var.numpy().astype(ft).tofile(os.path.join(d, tag + '_rv.bin'))


def mode_lars(d, args):
    for dt in (torch.float32, torch.float64):
        lars_run(d, args, dt)


def lars_run(d, args, dt):
    """float32: DIR/params.bin, DIR/mom.bin (PyTorch's own float32 result); float64 (the
    reference, from the same float32 inputs): DIR/params64.bin, DIR/mom64.bin."""
    nsteps, spe, epochs, warmup, bs = (int(a) for a in args[:5])
    lrw, lrb, wd, mom, eta = (float(a) for a in args[5:10])
    specs = []
    with open(os.path.join(d, 'spec.txt')) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            ndim = int(w[1])
            shape = tuple(int(x) for x in w[2:2 + ndim])
            specs.append((w[0], shape, int(w[2 + ndim]), int(w[3 + ndim])))
    p0 = np.fromfile(os.path.join(d, 'params0.bin'), dtype='<f4')
    total = p0.size
    grads = np.fromfile(os.path.join(d, 'grads.bin'), dtype='<f4').reshape(nsteps, total)
    params = [nn.Parameter(torch.tensor(p0[o:o + n].reshape(shape), dtype=dt))
              for _, shape, o, n in specs]
    # the reference's two groups: weights first, then biases and norm parameters
    pw = [p for p in params if p.ndim != 1]
    pb = [p for p in params if p.ndim == 1]
    opt = LARS([{'params': pw}, {'params': pb}], lr=0, weight_decay=wd, momentum=mom, eta=eta,
               weight_decay_filter=True, lars_adaptation_filter=True)
    for step in range(nsteps):
        for p, (_, shape, o, n) in zip(params, specs):
            p.grad = torch.tensor(grads[step, o:o + n].reshape(shape), dtype=dt)
        lw, lb = schedule(step, spe, epochs, warmup, bs, lrw, lrb)
        opt.param_groups[0]['lr'] = lw
        opt.param_groups[1]['lr'] = lb
        opt.step()
    ft, sfx = ('<f8', '64') if dt == torch.float64 else ('<f4', '')
    out_p = np.zeros(total, dtype=ft)
    out_m = np.zeros(total, dtype=ft)
    for p, (_, shape, o, n) in zip(params, specs):
        out_p[o:o + n] = p.detach().numpy().ravel()
        out_m[o:o + n] = opt.state[p]['mu'].numpy().ravel()
    out_p.tofile(os.path.join(d, 'params%s.bin' % sfx))
    out_m.tofile(os.path.join(d, 'mom%s.bin' % sfx))


def main():
    mode = sys.argv[1]
    if mode == 'loss':
        a = sys.argv[2:]
        if not a or len(a) % 4:
            sys.exit('loss: expected groups of DIR N D LAMBDA')
        for i in range(0, len(a), 4):
            mode_loss(a[i], int(a[i + 1]), int(a[i + 2]), float(a[i + 3]))
    elif mode == 'sched':
        mode_sched(sys.argv[2:])
    elif mode == 'lars':
        mode_lars(sys.argv[2], sys.argv[3:])
    else:
        sys.exit('unknown mode ' + mode)


if __name__ == '__main__':
    main()
