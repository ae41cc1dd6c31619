"""Reference weighted kNN (InstDisc / solo-learn WeightedKNNClassifier), computed plainly in
float64 with NumPy, for tests/test_eval.c.

usage: knn_ref.py DIR NTRAIN NTEST DIM NCLASSES K T
Reads DIR/{train,test}_feat.bin (float32, rows NOT normalised) and DIR/{train,test}_lab.bin
(int32); writes DIR/knn_ref.txt: "correct_top1 correct_top5" and then the predicted class of
each test row (one per line). Similarity ties keep the lower train index, score ties rank the
lower class first (stable sorts), the rule bt_knn_eval documents."""
import sys
import numpy as np

d = sys.argv[1]
ntr, nte, dim, C, k = (int(v) for v in sys.argv[2:7])
T = float(sys.argv[7])
ftr = np.fromfile(f"{d}/train_feat.bin", dtype="<f4").reshape(ntr, dim).astype(np.float64)
fte = np.fromfile(f"{d}/test_feat.bin", dtype="<f4").reshape(nte, dim).astype(np.float64)
ltr = np.fromfile(f"{d}/train_lab.bin", dtype="<i4")
lte = np.fromfile(f"{d}/test_lab.bin", dtype="<i4")
ftr /= np.linalg.norm(ftr, axis=1, keepdims=True)
fte /= np.linalg.norm(fte, axis=1, keepdims=True)
k = min(k, ntr)
sim = fte @ ftr.T                                   # (nte, ntr) cosine similarities
nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # k most similar, ties: lower index
w = np.exp(np.take_along_axis(sim, nn, axis=1) / T)  # (nte, k)
scores = np.zeros((nte, C))
for i in range(nte):
    np.add.at(scores[i], ltr[nn[i]], w[i])
order = np.argsort(-scores, axis=1, kind="stable")   # classes by score, ties: lower class
c1 = int((order[:, 0] == lte).sum())
c5 = int((order[:, :min(5, C)] == lte[:, None]).any(axis=1).sum())
with open(f"{d}/knn_ref.txt", "w") as f:
    f.write(f"{c1} {c5}\n")
    for p in order[:, 0]:
        f.write(f"{int(p)}\n")
