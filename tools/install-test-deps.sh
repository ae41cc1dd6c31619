#!/usr/bin/env bash
# Installs the extras of barlow's tests and benchmarks on Debian 12 (as root), after
# tools/install-deps.sh: OpenBLAS (OpenMP build; a GEMM reference only, barlow does not link
# it), Open MPI (the multi-process tests and `make mpi`), the PyTorch reference with
# torchvision, NumPy, Pillow and ONNX from Debian, and safetensors, onnxruntime and the
# tensorboard reader from PyPI. Skips what is already there.
set -euo pipefail
pkgs=(libopenblas-openmp-dev libopenmpi-dev openmpi-bin python3-torch python3-torchvision
      python3-numpy python3-pil python3-pip python3-onnx)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The safetensors package (PyPI) checks interop in the tests; Debian 12 does not package it.
if ! /usr/bin/python3 -c "import safetensors" 2>/dev/null; then
  /usr/bin/python3 -m pip install -q --break-system-packages 'safetensors==0.8.0'
fi
# onnxruntime (PyPI) runs the ONNX export in the interop test. --no-deps: its declared
# protobuf>=4 would replace Debian's python3-protobuf 3.21 that python3-onnx is built against;
# inference needs only numpy, which Debian provides.
if ! /usr/bin/python3 -c "import onnxruntime" 2>/dev/null; then
  /usr/bin/python3 -m pip install -q --break-system-packages --no-deps 'onnxruntime==1.32.0'
fi
# tensorboard (PyPI) reads the event files back in the TensorBoard test, with its own reader.
# --no-deps and pinned: newer releases and their declared protobuf would replace Debian's
# python3-protobuf 3.21 (python3-onnx needs it), and recent releases (2.21 tried) ship code that needs
# protobuf 5 (google.protobuf.runtime_version). The event reader needs only absl-py (pure Python, no deps), numpy and protobuf.
if ! /usr/bin/python3 -c "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator" 2>/dev/null; then
  /usr/bin/python3 -m pip install -q --break-system-packages --no-deps 'tensorboard==2.18.0' 'absl-py>=1.0'
fi
echo "install-test-deps: ok"
