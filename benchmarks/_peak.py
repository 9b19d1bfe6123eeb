"""How fast a device multiplies matrices: the yardstick a network's speed is read against.

A network's rate is given in the FLOP/s of its direct convolutions and dense layers
(the model card's ``flops_per_spectrum``, two per multiply-add) and as a fraction of
two peaks: a large square matrix product timed in the same run (same device, threads
and precision: what the hardware gives PyTorch) and, for GPUs, the vendor's dense bf16
figure. Winograd convolutions do fewer multiplications than that count, so a CPU
network can pass 100 % of the matrix product's rate.
"""

from __future__ import annotations

import time
from typing import Any

DATASHEET_BF16_TFLOPS = {
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.5,
    "H200 NVL": 835.5,
    "H200": 989.4,
}
"""Dense bf16 tensor-core TFLOP/s (without sparsity) from NVIDIA's H100/H200 datasheets,
by a part of the name ``torch.cuda.get_device_name`` gives; first match wins."""


def datasheet_bf16_tflops(gpu_name: str | None) -> float | None:
    """The datasheet's dense bf16 TFLOP/s of the GPU named ``gpu_name``; None if not listed."""
    for part, tflops in DATASHEET_BF16_TFLOPS.items():
        if gpu_name and part in gpu_name:
            return tflops
    return None


def matmul_gflops(device: str, dtype: Any, *, n: int, repeat: int = 5) -> float:
    """Best GFLOP/s of ``repeat`` (n x n) @ (n x n) products in ``dtype`` on ``device``,
    on this process's PyTorch threads (2 n^3 FLOP each)."""
    import torch

    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def seconds() -> float:
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    seconds()  # warms the library up; not counted
    return 2 * n**3 / min(seconds() for _ in range(repeat)) / 1e9


def network_rate(
    spectra_per_s: float, flops_per_spectrum: int | None, peak_gflops: float | None
) -> dict[str, float | None]:
    """A network's GFLOP/s (direct count) and its fraction of ``peak_gflops``; None where
    the model card has no FLOP count or there is no peak to compare with."""
    if not flops_per_spectrum:
        return {"gflops": None, "of_matmul": None}
    gflops = spectra_per_s * flops_per_spectrum / 1e9
    return {"gflops": gflops, "of_matmul": gflops / peak_gflops if peak_gflops else None}
