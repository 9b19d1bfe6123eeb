#!/usr/bin/env bash
# The GPU checks in one go: the training and classification benchmarks on CUDA (from a
# dataset, and a FITS tree read by a worker per core with the network on the GPU, then on
# the CPU), then the GPU tests, each with its own time limit so that one slow step cannot
# lose the others' figures; together under 600 s, one device call. Logs and JSON go to OUT_DIR.
#
#   benchmarks/gpu.sh [OUT_DIR]      (default benchmarks/out/gpu)
#
# Needs python3 with a CUDA build of PyTorch and spectraldl importable.
set -u
out=${1:-benchmarks/out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    | tee -a "$out/gpu.txt"
timeout 220 python3 benchmarks/train.py --skip-cpu --json "$out/train-gpu.json" 2>&1 \
    | tee "$out/train-gpu.log"
timeout 100 python3 benchmarks/classify.py --gpu-only --json "$out/classify-gpu.json" 2>&1 \
    | tee "$out/classify-gpu.log"
timeout 120 python3 benchmarks/classify.py --host-tree cuda,cpu --n-files 20000 \
    --models cnn --model-dir cnn=src/spectraldl/data/models/cnn \
    --json "$out/classify-host-tree.json" 2>&1 | tee "$out/classify-host-tree.log"
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider \
    tests/test_models.py tests/test_training.py tests/test_inference.py tests/test_channels_last.py 2>&1 \
    | tee "$out/gpu-tests.log"
