#!/usr/bin/env bash
# Installs what barlow needs to build and run on Debian 12 (as root): compilers, OpenMP,
# cJSON, libjpeg-turbo, libpng, zlib, cairo (plots), protobuf-c (ONNX export). barlow has its
# own GEMM, so no BLAS. The extras for the tests and benchmarks (OpenBLAS as a reference,
# PyTorch, ONNX, onnxruntime, tensorboard, Open MPI) are tools/install-test-deps.sh.
# Skips apt entirely when everything is already there.
set -euo pipefail
pkgs=(build-essential clang make pkg-config libcjson-dev libturbojpeg0-dev libjpeg62-turbo-dev
      libpng-dev zlib1g-dev libcairo2-dev fonts-dejavu-core protobuf-c-compiler libprotobuf-c-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: ok"
