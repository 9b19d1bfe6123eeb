"""Training speed: seconds per epoch of the spectraldl trainer vs a plain PyTorch loop.

Both train the same network (same class, same initial weights) with Adam,
cross-entropy and batches of 256 on the same spectra, and both compute the
validation loss once per epoch. The baseline is the loop of the PyTorch
tutorials: a ``DataLoader`` over a ``TensorDataset`` (shuffled), batches
moved to the device one by one, ``loss.item()`` every step. The spectraldl
trainer (`spectraldl.ml.training.fit_network`) keeps all data on the device,
indexes batches there and syncs once per epoch. Timing does not depend on
what the spectra look like, so they are random standardised vectors.

Sections:

* CPU: ``--spectra`` (13 000) per epoch, ``--epochs`` epochs each (1);
* inference on CPU: spectra/s of `TrainedModel.predict_proba` per network,
  with the thesis CNN as the baseline;
* GPU (only with CUDA): 229 epochs of 13 000 spectra (the thesis' final run,
  8 min 21 s on a GTX 980) in fp32, with bf16 and torch.compile, and with
  torch.compile's CUDA graphs (reduce-overhead), and with the whole step
  replayed as one CUDA graph (``cuda_graph``), against the plain
  loop timed on ``--gpu-baseline-epochs`` epochs and scaled to 229;
  "skipped: no GPU" otherwise.

    .venv/bin/python benchmarks/train.py [--spectra 13000] [--epochs 1]
        [--models cnn,cnn-small,fnn] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch
from _common import print_table, write_json

from spectraldl.ml.models import build_model
from spectraldl.ml.training import TrainConfig, fit_network

BATCH = 256


def make_data(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random standardised 140-point spectra with labels 0-2."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 140)).astype(np.float32)
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x, rng.integers(0, 3, n)


def plain_loop(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    *,
    epochs: int,
    device: str,
    seed: int = 0,
) -> list[float]:
    """The tutorial training loop; returns seconds per epoch (training + validation loss)."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = build_model(name, n_classes=3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    train_loader = DataLoader(
        TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH, shuffle=True
    )
    val_loader = DataLoader(
        TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv)), batch_size=BATCH
    )
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        running = 0.0
        for xb, yb in train_loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(xb)
        model.eval()
        val = 0.0
        with torch.no_grad():
            for xb, yb in val_loader:
                xb, yb = xb.to(device), yb.to(device)
                val += loss_fn(model(xb), yb).item() * len(xb)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def spectraldl_trainer(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    xv: np.ndarray,
    yv: np.ndarray,
    *,
    epochs: int,
    device: str,
    bf16: bool = False,
    compile_: bool = False,
    compile_mode: str = "default",
    cuda_graph: bool = False,
    channels_last: bool = False,
) -> tuple[list[float], float]:
    """`fit_network` with early stopping off; returns seconds per epoch and in all."""
    config = TrainConfig(
        model=name,
        epochs=epochs,
        patience=epochs + 1,
        device=device,
        bf16=bf16,
        compile=compile_,
        compile_mode=compile_mode,
        cuda_graph=cuda_graph,
        channels_last=channels_last,
        seed=0,
    )
    start = time.perf_counter()
    result = fit_network(name, {"n_classes": 3, "input_n": 140}, x, y, xv, yv, config=config)
    total = time.perf_counter() - start
    return [h["seconds"] for h in result.history], total


def cpu_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    x, y = make_data(args.spectra, seed=0)
    xv, yv = make_data(args.spectra // 5, seed=1)
    rows = []
    for name in args.models:
        base = plain_loop(name, x, y, xv, yv, epochs=args.epochs, device="cpu")
        ours, _ = spectraldl_trainer(name, x, y, xv, yv, epochs=args.epochs, device="cpu")
        base_s, ours_s = float(np.median(base)), float(np.median(ours))
        for method, seconds in (("plain PyTorch loop (baseline)", base_s), ("spectraldl", ours_s)):
            rows.append(
                {
                    "section": "cpu train",
                    "model": name,
                    "method": method,
                    "spectra_per_epoch": args.spectra,
                    "epochs": args.epochs,
                    "s_per_epoch": seconds,
                    "speedup": base_s / seconds,
                }
            )
    return rows


def inference_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    from spectraldl.ml.modelcard import TrainedModel
    from spectraldl.prep.preprocess import PreprocessConfig

    x, _ = make_data(args.spectra, seed=2)
    rows = []
    rates = {}
    for name in ["cnn", *[m for m in args.models if m != "cnn"]]:
        network = build_model(name, n_classes=3)
        card = {"classes": ["emission", "absorption", "double-peak"]}
        card["preprocessing"] = PreprocessConfig().to_dict()
        model = TrainedModel(network=network, card=card)
        model.predict_proba(x[:512])
        start = time.perf_counter()
        model.predict_proba(x)
        rates[name] = len(x) / (time.perf_counter() - start)
        rows.append(
            {
                "section": "cpu inference",
                "model": name,
                "method": "TrainedModel.predict_proba",
                "spectra_per_s": rates[name],
                "speedup": rates[name] / rates["cnn"],
            }
        )
    return rows


def gpu_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        print("\nGPU: skipped: no GPU")
        return [{"section": "gpu train", "method": "skipped: no GPU"}]
    x, y = make_data(13_000, seed=0)
    xv, yv = make_data(2_600, seed=1)
    epochs = 229
    base = plain_loop("cnn", x, y, xv, yv, epochs=args.gpu_baseline_epochs, device="cuda")
    base_total = float(np.median(base[1:] or base)) * epochs
    rows = [
        {
            "section": "gpu train",
            "model": "cnn",
            "method": f"plain PyTorch loop (baseline, {len(base)} epochs scaled to {epochs})",
            "epochs": epochs,
            "seconds": base_total,
            "speedup": 1.0,
        }
    ]
    variants = [
        ("spectraldl fp32", False, False, "default", False, False),
        ("spectraldl bf16 + torch.compile", True, True, "default", False, False),
        (
            "spectraldl bf16 + torch.compile reduce-overhead",
            True,
            True,
            "reduce-overhead",
            False,
            False,
        ),
        ("spectraldl fp32 + CUDA graph", False, False, "default", True, False),
        ("spectraldl bf16 + CUDA graph", True, False, "default", True, False),
        ("spectraldl bf16 + CUDA graph + channels-last", True, False, "default", True, True),
    ]
    for label, bf16, compile_, mode, graph, channels_last in variants:
        if args.gpu_methods and not any(m in label for m in args.gpu_methods):
            continue
        try:
            per_epoch, total = spectraldl_trainer(
                "cnn",
                x,
                y,
                xv,
                yv,
                epochs=epochs,
                device="cuda",
                bf16=bf16,
                compile_=compile_,
                compile_mode=mode,
                cuda_graph=graph,
                channels_last=channels_last,
            )
        except Exception as error:  # one failing variant must not lose the others' figures
            rows.append({"section": "gpu train", "model": "cnn", "method": f"{label}: {error!r}"})
            continue
        rows.append(
            {
                "section": "gpu train",
                "model": "cnn",
                "method": label,
                "epochs": epochs,
                "seconds": total,
                "s_per_epoch_steady": float(np.median(per_epoch[5:] or per_epoch)),
                "speedup": base_total / total,
                "goal_15s": "met" if total <= 15.0 else "missed",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spectra", type=int, default=13_000, help="training spectra per epoch")
    parser.add_argument("--epochs", type=int, default=1, help="CPU epochs per method")
    parser.add_argument("--models", default="cnn,cnn-small,fnn", help="networks, comma-separated")
    parser.add_argument("--gpu-baseline-epochs", type=int, default=4)
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU section")
    parser.add_argument(
        "--gpu-methods", default="", help="GPU variants whose names contain one of these (a,b)"
    )
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.gpu_methods = [m.strip() for m in args.gpu_methods.split(",") if m.strip()]
    load_before = os.getloadavg()[0]
    rows: list[dict[str, Any]] = []
    if not args.skip_cpu:
        cpu = cpu_section(args)
        print_table(
            f"Training on CPU ({torch.get_num_threads()} threads), {args.spectra} spectra per "
            f"epoch, batch {BATCH}, + validation of {args.spectra // 5}",
            cpu,
            ["model", "method", "spectra_per_epoch", "epochs", "s_per_epoch", "speedup"],
        )
        inference = inference_section(args)
        print_table(
            f"Inference on CPU, {args.spectra} spectra",
            inference,
            ["model", "method", "spectra_per_s", "speedup"],
        )
        rows += cpu + inference
    gpu = gpu_section(args)
    if torch.cuda.is_available():
        print_table(
            "Training on GPU: 229 epochs of 13 000 spectra (thesis: 8 min 21 s on a GTX 980)",
            gpu,
            ["model", "method", "epochs", "seconds", "s_per_epoch_steady", "speedup", "goal_15s"],
        )
    rows += gpu
    load_after = os.getloadavg()[0]
    print(f"\nload average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    write_json(args.json, "train", rows, load_before=load_before, load_after=load_after)


if __name__ == "__main__":
    main()
