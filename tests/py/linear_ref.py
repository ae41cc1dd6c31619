"""Reference linear probe on fixed features, as evaluate.py trains its classifier:
nn.Linear with bias, cross-entropy, SGD(momentum=0.9, weight_decay=wd), CosineAnnealingLR
(T_max = epochs) stepped once per epoch; for tests/test_eval.c.

usage: linear_ref.py DIR NTRAIN NTEST DIM NCLASSES EPOCHS BATCH LR WD
Reads DIR/{xtr,xte}.bin (float32 rows), DIR/{ytr,yte}.bin (int32), DIR/w0.bin (float32
(C, D) initial weights; bias starts at 0, as evaluate.py) and DIR/perm.bin (int32
(EPOCHS, NTRAIN): the order of the train rows in each epoch, batches of BATCH, last one short).
Writes DIR/linear_ref.txt: per epoch "acc1 acc5" on the test rows, then DIR/w_ref.bin,
DIR/b_ref.bin (the final weights); then runs the same in float64 from the same float32 inputs
and writes its final weights as DIR/w_ref64.bin, DIR/b_ref64.bin (float64)."""
import sys
import numpy as np
import torch

torch.set_num_threads(1)
d = sys.argv[1]
ntr, nte, D, C, E, B = (int(v) for v in sys.argv[2:8])
lr, wd = float(sys.argv[8]), float(sys.argv[9])
xtr = torch.from_numpy(np.fromfile(f"{d}/xtr.bin", dtype="<f4").reshape(ntr, D))
xte = torch.from_numpy(np.fromfile(f"{d}/xte.bin", dtype="<f4").reshape(nte, D))
ytr = torch.from_numpy(np.fromfile(f"{d}/ytr.bin", dtype="<i4").astype(np.int64))
yte = torch.from_numpy(np.fromfile(f"{d}/yte.bin", dtype="<i4").astype(np.int64))
perm = torch.from_numpy(np.fromfile(f"{d}/perm.bin", dtype="<i4").reshape(E, ntr).astype(np.int64))
for dt in (torch.float32, torch.float64):
    fc = torch.nn.Linear(D, C).to(dt)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(np.fromfile(f"{d}/w0.bin", dtype="<f4").reshape(C, D)).to(dt))
        fc.bias.zero_()
    opt = torch.optim.SGD(fc.parameters(), lr, momentum=0.9, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, E)
    crit = torch.nn.CrossEntropyLoss()
    lines = []
    for e in range(E):
        for b0 in range(0, ntr, B):
            idx = perm[e, b0:b0 + B]
            loss = crit(fc(xtr[idx].to(dt)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            top = fc(xte.to(dt)).topk(min(5, C), dim=1).indices
            acc1 = (top[:, 0] == yte).float().mean().item() * 100
            acc5 = (top == yte[:, None]).any(dim=1).float().mean().item() * 100
        lines.append(f"{acc1:.6f} {acc5:.6f}")
    if dt == torch.float32:
        with open(f"{d}/linear_ref.txt", "w") as f:
            f.write("\n".join(lines) + "\n")
    ft, sfx = ("<f8", "64") if dt == torch.float64 else ("<f4", "")
    fc.weight.detach().numpy().astype(ft).tofile(f"{d}/w_ref{sfx}.bin")
    fc.bias.detach().numpy().astype(ft).tofile(f"{d}/b_ref{sfx}.bin")
