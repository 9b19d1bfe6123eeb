"""Regenerate the measured figures of README.md and docs/*.md from the benchmark JSON.

Every measured figure in the Markdown pages sits between two HTML comments,

    <!-- measured: NAME -->...<!-- /measured -->

either inside a sentence or around whole lines (a table). NAME is one of the
renderers below; each reads the JSON files in ``src/spectraldl/data/benchmarks/``
(written by ``benchmarks/*.py --json``, one file per run, with the machine and
the date) and returns the text. ``make docs`` rewrites the regions; ``--check``
(run by ``tests/test_docs.py``) prints each region that differs from its JSON
and exits 1, so a page cannot drift from the measurements it quotes.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import math
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectraldl.io.archives.ondrejov import observation_key

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path("src/spectraldl/data/benchmarks")
PAGES = ("README.md", "docs/*.md")
THESIS_TRAIN_S = 8 * 60 + 21
"""The thesis' final run, 229 epochs on a GTX 980 (as published, not measured here)."""
FP32_DEFAULT = "spectraldl Predictor fp32 default (+novelty, start-up)"
"""The classify benchmark's row of the default CPU predictor (benchmarks/classify.py)."""
INT8 = "spectraldl Predictor int8 (x86)"
BASELINE = "plain fp32 loop (baseline)"
SIMULATE_COMMAND = "lamost dr1 archive: whole command"
"""The simulate benchmark's rows of the whole command (benchmarks/simulate.py)."""
SIMULATE_AT_SCALE = f"{SIMULATE_COMMAND}, archive scale"
GOALS = {
    "ingest-vs-thesis": 20.0,
    "ingest-second-worker": 1.8,
    "simulate-files-per-s": 1000.0,
    "cpu-fp32-ratio": 2.0,
    "dr1-minutes": 10.0,
    "gpu-spectra-per-s": 5e6,
    "memory-mib": 2048.0,
    "gpu-host-files-per-s": 20000.0,
}
"""The performance goals of the issue on performance, each compared with its measurement."""
_GPU_HOST_RATE = f"{GOALS['gpu-host-files-per-s']:,.0f}".replace(",", " ")
GPU_HOST_GOAL = f"GPU machine, FITS tree to predictions: >= {_GPU_HOST_RATE} files/s"
THESIS_CNN_CARD = Path("src/spectraldl/data/models/cnn/card.json")
"""The shipped thesis CNN's card: its FLOPs per spectrum, the same for every model of its
architecture, for GPU runs that did not record them."""
REGION = re.compile(r"<!-- measured: ([\w.-]+) -->(.*?)<!-- /measured -->", re.DOTALL)


class DocsError(Exception):
    """A region names no renderer, or a renderer finds no matching figure."""


@dataclass
class Sources:
    """The benchmark JSON files of one checkout, loaded on first use."""

    root: Path

    def __post_init__(self) -> None:
        self._cache: dict[str, dict[str, Any]] = {}

    def json(self, name: str) -> dict[str, Any]:
        """The JSON ``BENCHMARKS/<name>.json``."""
        if name not in self._cache:
            path = self.root / BENCHMARKS / f"{name}.json"
            try:
                self._cache[name] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise DocsError(f"{path}: {exc}") from exc
        return self._cache[name]

    def row(self, name: str, **match: Any) -> dict[str, Any]:
        """The one row of ``name`` whose fields equal ``match``."""
        rows = [r for r in self.json(name)["rows"] if all(r.get(k) == v for k, v in match.items())]
        if len(rows) != 1:
            raise DocsError(f"{BENCHMARKS / name}.json: {len(rows)} rows match {match}")
        return rows[0]


def dataset_rows(src: Sources, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The thesis CNN's classify-from-a-dataset row of ``method`` on one PyTorch thread and
    on the most threads measured (the machine's cores)."""
    runs = [
        r
        for r in src.json("classify")["rows"]
        if r.get("section") == "dataset-cpu" and r.get("model") == "cnn"
    ]
    if not runs or any("threads" not in r for r in runs):
        raise DocsError(f"{BENCHMARKS}/classify.json: dataset rows without their thread count")
    cores = max(r["threads"] for r in runs)
    return (
        src.row("classify", model="cnn", method=method, threads=1),
        src.row("classify", model="cnn", method=method, threads=cores),
    )


def num(value: float, digits: int = 0) -> str:
    """``value`` with ``digits`` decimals and thousands grouped by spaces (2 707)."""
    return f"{value:,.{digits}f}".replace(",", " ")


def sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, grouped (20.2, 1 073, 0.783)."""
    text = f"{float(f'{value:.{digits}g}'):,}"
    text = text.removesuffix(".0") if abs(value) >= 10 ** (digits - 1) else text
    return text.replace(",", " ")


def millions(value: float, digits: int = 2) -> str:
    """Spectra per second in millions (1.65)."""
    return f"{value / 1e6:.{digits}f}"


def span(values: Iterable[float], fmt: Callable[[float], str]) -> str:
    """``low-high`` of ``values`` (one value when they agree once formatted)."""
    texts = sorted({fmt(v) for v in values}, key=lambda t: float(t.replace(" ", "")))
    return texts[0] if len(texts) == 1 else f"{texts[0]}-{texts[-1]}"


def machine(src: Sources, name: str) -> str:
    """The machine of one JSON in words: GPU, or CPU model (native bf16 or not, where
    recorded) and cores."""
    info = src.json(name)["machine"]
    bf16 = {True: " (native bf16)", False: " (no native bf16)"}.get(info.get("native_bf16"), "")
    return info.get("gpu") or f"{info['cpu']}{bf16}, {info['cores']} cores"


def measured_on(src: Sources, *names: str) -> str:
    """The line every shipped table carries: where and when it was measured, and from which JSON."""
    by_run: dict[tuple[str, str], list[str]] = {}
    for name in names:
        data = src.json(name)
        by_run.setdefault((data.get("date", "undated"), machine(src, name)), []).append(
            f"`{name}.json`"
        )
    runs = "; ".join(
        f"{date} on {where} ({', '.join(files)})" for (date, where), files in by_run.items()
    )
    return (
        f"*Measured on another machine than yours: {runs}, in "
        f"`{BENCHMARKS}/`. Regenerated by `make docs`.*"
    )


# --- README -----------------------------------------------------------------


def _demo_classes(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def readme_demo_time(src: Sources) -> str:
    """How long the stored demo run took, and its training step, in minutes."""
    demo = src.json("demo")
    train = next(step["seconds"] for step in demo["steps"] if step["step"] == "train")
    return (
        f"{demo['seconds'] / 60:.1f} minutes on {demo['machine']['cores']} cores "
        f"({train / 60:.1f} of them training the thesis CNN on CPU; run of {demo['date']})"
    )


def readme_demo(src: Sources) -> str:
    """The README's paragraph on what the demo gave, from ``demo.json`` (``--from-demo``)."""
    demo = src.json("demo")
    checks = demo["checks"]
    real, ordinary = checks["real_labelled"], checks["ordinary_lamost"]
    misses = [s for s in real["spectra"] if s["predicted"] != s["label"]]
    observations = len({observation_key(s["id"]) for s in real["spectra"]})
    twice = (
        f"; the {real['n']} are {observations} observations, {real['n'] - observations} "
        "Ondřejov exposures being there in both their raw and SSAP forms"
        if observations < real["n"]
        else ""
    )
    missed = "; ".join(
        f"{s['id']} ({s['archive']}, labelled {s['label']}, called {s['predicted']})"
        for s in misses
    )
    test = checks["test"]
    f1 = ", ".join(f"{c} {v:.2f}" for c, v in test["f1"].items() if v is not None)
    candidates = checks["candidates"]
    labels = sorted(set(candidates["real_labels"]))
    known = checks.get("known")
    text = (
        f"What the demo gave on the real spectra ({machine(src, 'demo')}, seed "
        f"{demo['seed']}; run of {demo['date']}): the CNN labelled "
        f"{real['right']} of the {real['n']} real labelled spectra as their labels say (Ondřejov "
        "spectra with the thesis' labels, LAMOST counterparts with weak labels of another epoch)"
        + twice
        + (f"; missed: {missed}." if misses else ".")
        + f" {ordinary['candidates']} of the {ordinary['n'] - ordinary['unreadable']} readable "
        f"ordinary real LAMOST stars became candidates ({_demo_classes(ordinary['classes'])})."
        f" On the synthetic test split: accuracy {test['accuracy']:.2f} (F1: {f1}). Of the "
        f"{num(candidates['total'])} candidates, {candidates['real']} are real LAMOST spectra"
        + (f" (labelled {', '.join(labels)})" if labels else "")
        + "; the others are simulated (the `origin` column says which)"
    )
    if known:
        text += (
            f"; the cross-match recovers {known['recovered']} of the {known['in_input']} known "
            "Be stars among the inputs"
        )
    return text + "."


def readme_performance(src: Sources) -> str:
    """The README's table of headline figures, one row per benchmark."""
    ing1 = {
        f: src.row("ingest", files=f, method="spectraldl ingest, 1 worker")
        for f in ("plain", "gzip")
    }
    thesis = src.row("ingest", files="plain", method="thesis way (astropy+WCS+interp, 1 core)")
    two = {
        f: [
            src.row(n, files=f, method="spectraldl ingest, 2 workers")
            for n in ("ingest", "ingest-20000-files")
        ]
        for f in ("plain", "gzip")
    }
    sizes = " and ".join(
        num(src.row(n, files="plain", method="spectraldl ingest, 2 workers")["n_files"])
        for n in ("ingest", "ingest-20000-files")
    )
    dr8, ssap = (
        src.row("tables", files=f, method="spectraldl read_spectrum")
        for f in ("simulated LAMOST DR8, gzipped", "simulated Ondřejov SSAP")
    )
    writer = src.row("simulate", case="write+gzip DR1: fitsbytes")
    writer0 = src.row("simulate", case="write+gzip DR1: astropy HDUList.writeto (baseline)")
    train = src.row("train", section="cpu train", model="cnn", method="spectraldl")
    train0 = src.row(
        "train", section="cpu train", model="cnn", method="plain PyTorch loop (baseline)"
    )
    gpu_best = src.row(
        "train-gpu-h100-cuda-graph", method="spectraldl bf16 + CUDA graph + channels-last"
    )
    gpu_plain = src.row("train-gpu-h100-cuda-graph", speedup=1.0)
    cls = "classify"
    fp32_1, fp32 = dataset_rows(src, FP32_DEFAULT)
    int8 = dataset_rows(src, INT8)[1]
    base_1, base = dataset_rows(src, BASELINE)
    gpu = "classify-gpu-h100"
    cnn = src.row(gpu, model="cnn", method="spectraldl Predictor bf16", batch=262144)
    small = src.row(gpu, model="cnn-small", method="spectraldl Predictor bf16", batch=262144)
    cnn0 = src.row(gpu, model="cnn", method="plain fp32 loop")
    small0 = src.row(gpu, model="cnn-small", method="plain fp32 loop")
    tree = "classify-20000-files"
    tree2 = src.row(tree, section="fits-tree", case="classify FITS tree, local, 2 worker(s)")
    tree1 = src.row(tree, section="fits-tree", case="classify FITS tree, local, 1 worker(s)")
    dask2 = src.row(cls, section="dask", case="Dask LocalCluster, 2 worker(s)")
    dask1 = src.row(cls, section="dask", case="Dask LocalCluster, 1 worker(s)")
    tsne = src.row("explore", backend="opentsne")
    tsne0 = src.row("explore", backend="sklearn")
    key = src.row("web", measure="key press to next spectrum drawn")
    page = src.row("web", measure="page load to spectrum drawn (baseline)")

    def files_s(rows: list[dict[str, Any]], field: str) -> str:
        return span((r[field] for r in rows), num)

    def ratios(rows: list[dict[str, Any]]) -> str:
        return span((r["vs_1_worker"] for r in rows), lambda v: f"{v:.2f}")

    rows = [
        (
            "ingest real LAMOST files, 1 worker",
            f"{num(ing1['plain']['files_per_s'])} files/s "
            f"(gzipped: {num(ing1['gzip']['files_per_s'])})",
            f"the thesis' reading (astropy + WCS + interp) {num(thesis['files_per_s'])} files/s: "
            f"**{ing1['plain']['vs_thesis']:.1f}x** ({ing1['gzip']['vs_thesis']:.1f}x)",
            "ingest",
        ),
        (
            "ingest, 2 workers",
            f"{files_s(two['plain'], 'files_per_s')} files/s "
            f"(gzipped: {files_s(two['gzip'], 'files_per_s')})",
            f"1 worker: {ratios(two['plain'])}x (gzipped: {ratios(two['gzip'])}x); {sizes} files",
            "ingest",
        ),
        (
            "read table-form files (LAMOST DR8+; Ondřejov SSAP), 1 core",
            f"{num(dr8['files_per_s'])} files/s; {num(ssap['files_per_s'])} files/s",
            f"astropy reading the tables' spectrum columns: {dr8['vs_baseline']:.1f}x; "
            f"{ssap['vs_baseline']:.1f}x",
            "tables",
        ),
        (
            "simulate: write + gzip a LAMOST file",
            f"{num(writer['files_per_s'])} files/s",
            f"astropy `writeto`, {num(writer0['files_per_s'])} files/s: "
            f"{writer['ratio_vs_baseline']:.1f}x",
            "simulate",
        ),
        (
            "train the thesis CNN, CPU",
            f"{train['s_per_epoch']:.1f} s per epoch of {num(train['spectra_per_epoch'])}",
            f"plain PyTorch loop {train0['s_per_epoch']:.1f} s: {train['speedup']:.2f}x",
            "train",
        ),
        (
            "train 229 epochs of 13 000 (the thesis' run)",
            f"**{gpu_best['seconds']:.1f} s** (bf16, `--cuda-graph --channels-last`)",
            f"plain loop {gpu_plain['seconds']:.0f} s: {gpu_best['speedup']:.1f}x; "
            "the thesis: 8 min 21 s",
            "train-gpu-h100-cuda-graph",
        ),
        (
            "classify from a dataset, thesis CNN, CPU",
            f"{num(fp32['spectra_per_s'])}/s fp32 on {fp32['threads']} threads "
            f"({num(fp32_1['spectra_per_s'])}/s on 1), {num(int8['spectra_per_s'])}/s int8",
            f"plain fp32 loop on as many threads {num(base['spectra_per_s'])}/s "
            f"({num(base_1['spectra_per_s'])}/s): "
            + _with(f"**{ratio(fp32):.2f}x**", spread(fp32), f"{ratio(fp32_1):.2f}x on 1")
            + f", int8 {int8['ratio']:.2f}x",
            cls,
        ),
        (
            "classify from a dataset, GPU",
            f"thesis CNN {millions(cnn['spectra_per_s'])} million/s, cnn-small "
            f"{millions(small['spectra_per_s'])} million/s (bf16)",
            f"plain fp32 loops {millions(cnn0['spectra_per_s'])} and "
            f"{millions(small0['spectra_per_s'])} million/s: "
            f"{cnn['ratio']:.2f}x, {small['ratio']:.2f}x",
            gpu,
        ),
        (
            f"classify a FITS tree end to end ({_tree_model(tree2)}, {num(tree2['files'])} "
            "gzipped files)",
            f"{num(tree2['files_per_s'])} files/s, 2 workers: DR1's 2.2 million in "
            f"**{tree2['projected_dr1_min']:.1f} min**",
            f"1 worker {num(tree1['files_per_s'])} files/s: {tree2['ratio']:.2f}x",
            tree,
        ),
        (
            "the same on a Dask LocalCluster",
            f"{num(dask2['files_per_s'])} files/s, 2 workers",
            f"1 worker {num(dask1['files_per_s'])} files/s: {dask2['ratio']:.2f}x",
            cls,
        ),
        (
            f"t-SNE of {num(tsne['n'])} spectra (openTSNE)",
            f"{tsne['seconds']:.0f} s",
            f"scikit-learn {tsne0['seconds']:.0f} s, same quality: {tsne['speed_vs_sklearn']:.2f}x",
            "explore",
        ),
        (
            "web tool: key press to next spectrum drawn",
            f"median {key['ms_median']:.1f} ms, p90 {key['ms_p90']:.1f} ms",
            f"page load {page['ms_median']:.0f} ms",
            "web",
        ),
    ]
    lines = [
        "| what | measured | baseline in the same run | machine, date |",
        "|---|---|---|---|",
    ]
    for what, measured, baseline, name in rows:
        date = src.json(name).get("date", "undated")
        lines.append(f"| {what} | {measured} | {baseline} | {machine(src, name)}, {date} |")
    names = sorted({r[3] for r in rows})
    return "\n".join([*lines, "", measured_on(src, *names)])


def realism_auc(src: Sources) -> str:
    """Discriminator AUC, synthetic vs real LAMOST, dev and holdout."""
    return span((r["auc"] for r in src.json("realism")["rows"]), lambda v: f"{v:.2f}")


def realism_naive_auc(src: Sources) -> str:
    """The naive synthetic set's AUC on the dev files."""
    return f"{src.row('realism', set='dev')['auc_naive_baseline']:.2f}"


def realism_details(src: Sources) -> str:
    """The realism benchmark's other measurements: EW per class, slope and scatter tests,
    and the Ondřejov comparison with the labelled real spectra."""
    realism = src.json("realism")
    sets = {r["set"]: r for r in realism["rows"]}

    def ews(name: str) -> str:
        per_class = realism["details"][name]["ew_per_class"]
        return ", ".join(
            f"{c} {v['ew_real_median']:.1f} / {v['ew_synthetic_median']:.1f}"
            for c, v in per_class.items()
        )

    def pair(key: str) -> str:
        return f"{sets['dev'][key]:.2f} (dev), {sets['holdout'][key]:.2f} (holdout)"

    ondrejov = realism["ondrejov_sets"]
    lines = ondrejov["ew_per_class"]
    absorption, emission = lines["absorption"], lines["emission"]
    return (
        "Other measurements (the benchmark run of the table above): EW(H-alpha) per class, "
        f"real / synthetic median (Å), dev: {ews('dev')}; holdout: {ews('holdout')} "
        f"(KS p {pair('ew_ks_p')}). Continuum slope across the window (H-alpha masked): "
        f"KS p {pair('slope_ks_p')}. High-frequency scatter of the vectors: KS p "
        f"{pair('hf_noise_ks_p')}. Ondřejov, measured against the {ondrejov['n_real']} "
        "labelled real spectra (eval, never tuned): absorption EWs real "
        f"{min(absorption['ew_real']):.1f} to {max(absorption['ew_real']):.1f} Å vs synthetic "
        f"10-90 % {absorption['ew_synthetic_quartiles'][0]:.1f} to "
        f"{absorption['ew_synthetic_quartiles'][-1]:.1f} Å; emission real "
        f"{max(emission['ew_real']):.0f} to {min(emission['ew_real']):.0f} Å vs synthetic "
        f"{emission['ew_synthetic_quartiles'][0]:.0f} to "
        f"{emission['ew_synthetic_quartiles'][-1]:+.0f} Å (weak emitters included on purpose); "
        f"HF scatter {ondrejov['hf_real_median']:.3f} vs {ondrejov['hf_synthetic_median']:.3f}; "
        f"discriminator AUC {ondrejov['auc']:.2f} ± {ondrejov['auc_sd']:.2f} (indicative only "
        f"with {ondrejov['n_real']} real files)."
    )


def ondrejov_template_resolution(src: Sources) -> str:
    """How much degrading real Ondřejov spectra to MILES' resolution changes their vectors."""
    r = src.json("realism")["ondrejov_resolution"]
    return (
        f"RMS {r['rms_after_blur_median']:.3f} (median; {r['rms_after_blur_max']:.3f} at most) "
        f"in units of their standard deviation, against {r['rms_without_blur_median']:.2f} "
        f"({r['rms_without_blur_max']:.2f} at most) without the blur"
    )


def high_snr_scatter(src: Sources) -> str:
    """Synthetic vs real high-frequency scatter of the dev files in the highest S/N bin."""
    (top,) = [
        b for b in src.json("realism")["details"]["dev"]["noise_vs_snr"] if b["snr"] == "40-inf"
    ]
    return (
        f"HF scatter {top['synthetic_median']:.2f} vs {top['real_median']:.2f} above SN_R 40 on dev"
    )


def _yardstick(src: Sources, pair: str) -> float:
    rows = [r for r in src.json("realism")["plate_yardstick"] if r["pair"] == pair]
    if len(rows) != 1:
        raise DocsError(f"realism.json: no plate_yardstick pair {pair!r}")
    return rows[0]["auc"]


def realism_plate_synthetic(src: Sources) -> str:
    """Real F-G-K stars (dev, its plate's other fibres, other plates) vs synthetic: the AUCs."""
    pairs = (
        "real dev vs synthetic",
        "real same plate vs synthetic",
        "real other plates vs synthetic",
    )
    return span((_yardstick(src, p) for p in pairs), lambda v: f"{v:.2f}")


def sky_lines_matched(src: Sources) -> str:
    """At how many night-sky lines the synthetic ivar's excess matches the dev files' to 10 %."""
    lines = src.json("realism")["sky_line_sigma"]
    close = sum(
        abs(synthetic / real - 1) <= 0.1
        for real, synthetic in zip(lines["dev_real"], lines["dev_synthetic"], strict=True)
    )
    return f"{close} of the {len(lines['dev_real'])} lines to within 10 %"


def realism_plate_plate(src: Sources) -> str:
    """Real stars of plate B6212 (dev, its other fibres) vs other plates: the AUCs."""
    pairs = ("real dev vs real other plates", "real same plate vs real other plates")
    return span((_yardstick(src, p) for p in pairs), lambda v: f"{v:.2f}")


def _gpu_classify(src: Sources, model: str) -> dict[str, Any]:
    return src.row(
        "classify-gpu-h100", model=model, method="spectraldl Predictor bf16", batch=262144
    )


def _datasheet_bf16_tflops(gpu: str) -> float | None:
    """The GPU's dense bf16 TFLOP/s from its datasheet (the table the benchmarks use)."""
    spec = importlib.util.spec_from_file_location("_peak", ROOT / "benchmarks" / "_peak.py")
    assert spec is not None and spec.loader is not None
    peak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peak)
    return peak.datasheet_bf16_tflops(gpu)


def gpu_cnn_peak_share(src: Sources) -> str:
    """The thesis CNN's best GPU rate in TFLOP/s and, for a GPU in the datasheet table, as a
    share of its dense bf16 peak."""
    row = _gpu_classify(src, "cnn")
    card = json.loads((ROOT / THESIS_CNN_CARD).read_text())
    flops = card["architecture"]["flops_per_spectrum"]
    tflops = row["spectra_per_s"] * flops / 1e12
    text = f"{tflops:.0f} TFLOP/s at {flops / 1e6:.0f} MFLOP per spectrum"
    gpu = src.json("classify-gpu-h100")["machine"].get("gpu") or ""
    peak = _datasheet_bf16_tflops(gpu)
    if peak:
        text += (
            f", {100 * tflops / peak:.1f} % of the {gpu.removeprefix('NVIDIA ')}'s dense bf16 "
            f"peak ({peak:.0f} TFLOP/s, datasheet)"
        )
    return text


def gpu_cnn_millions(src: Sources) -> str:
    """The thesis CNN on the GPU, millions of spectra/s (bf16)."""
    return millions(_gpu_classify(src, "cnn")["spectra_per_s"], 1)


def gpu_small_millions(src: Sources) -> str:
    """cnn-small on the GPU, millions of spectra/s (bf16)."""
    return millions(_gpu_classify(src, "cnn-small")["spectra_per_s"], 1)


def _memory_runs(src: Sources) -> list[dict[str, Any]]:
    """The measured rows of memory.json, smallest tree first (a projection row has no time)."""
    return [r for r in src.json("memory")["rows"] if "seconds" in r]


def classify_memory(src: Sources) -> str:
    """Peak memory and temporary space of classify as the tree grows (benchmarks/memory.py)."""
    data = src.json("memory")
    rows = _memory_runs(src)
    peaks = ", ".join(f"{num(r['peak_rss_mib'])} MiB at {num(r['files'])} files" for r in rows)
    parts = max(r["peak_parts_mib"] for r in rows)
    largest = rows[-1]
    return (
        f"Memory (`benchmarks/memory.py`, the thesis CNN, 2 workers, trees of distinct real "
        f"gzipped LAMOST files; {machine(src, 'memory')}, {data['date']}): peak resident memory "
        f"of the whole process tree {peaks}; `PRED.parts/` at most {parts:.1f} MiB, "
        f"{largest['peak_parts_mib'] / largest['table_mib']:.2f} times the final table. The "
        f"{num(largest['files'])}-file run took {largest['seconds'] / 60:.1f} min "
        f"({num(largest['files_per_s'])} files/s)."
    )


def memory_largest(src: Sources) -> str:
    """classify's peak memory at the largest and the smallest tree measured, for README."""
    rows = _memory_runs(src)
    small, large = rows[0], rows[-1]
    return (
        f"{num(large['peak_rss_mib'])} MiB with {num(large['files'])} files "
        f"({num(small['peak_rss_mib'])} MiB with {num(small['files'])})"
    )


def measure_cost(src: Sources) -> str:
    """What measuring H-alpha adds to reading and preprocessing a file, per archive."""
    cost = {row["archive"]: row for row in src.json("measure")["cost"]}
    lamost, ondrejov = cost["lamost"], cost["ondrejov"]

    def base(row: dict[str, Any]) -> float:
        return row["read_ms"] + row["preprocess_ms"]

    return (
        f"Measuring adds about {lamost['measure_over_read_preprocess']:.0%} to reading and "
        f"preprocessing a LAMOST file ({lamost['measure_ms']:.2f} ms against "
        f"{base(lamost):.2f} ms: a chunk's files share a wavelength grid and their H-alpha "
        "windows are measured together, `spectraldl.prep.measure.measure_halpha_windows`; one "
        f"at a time, `measure_halpha`, {lamost['measure_one_by_one_ms']:.2f} ms) and about "
        f"{ondrejov['measure_over_read_preprocess']:.0%} for an Ondřejov file "
        f"({ondrejov['measure_ms']:.2f} ms against {base(ondrejov):.2f} ms)."
    )


def _tree_stages(src: Sources) -> list[dict[str, Any]]:
    """Where a file's time goes in the 20 000-file tree (one process), stage by stage."""
    return [
        r for r in src.json("classify-20000-files")["rows"] if r["section"] == "fits-tree-stages"
    ]


def reading_rate(src: Sources) -> str:
    """Files/s one CPU process reads, preprocesses and writes when the network is elsewhere."""
    stages = _tree_stages(src)
    rest = sum(r["ms_per_file"] for r in stages if not r["stage"].startswith("predict"))
    return num(round(1000 / rest, -2))


def dr1_goal(src: Sources) -> str:
    """DR1's projection with what one core spends per file and the network's share of it."""
    row = src.row(
        "classify-20000-files", section="fits-tree", case="classify FITS tree, local, 2 worker(s)"
    )
    stages = _tree_stages(src)
    (network,) = [r for r in stages if r["stage"].startswith("predict")]
    return (
        f"{row['projected_dr1_min']:.1f} min ({num(row['files_per_s'])} files/s); one core "
        f"spends {sum(r['ms_per_file'] for r in stages):.2f} ms a file, "
        f"{network['ms_per_file']:.2f} ms of it in the network, which runs at "
        f"{network['of_matmul']:.2f}x the core's fp32 matrix-product rate in this run; "
        + ", ".join(
            f"`--precision {name}` {row['projected_dr1_min']:.1f} min (the same class as fp32 "
            f"for {_percent(row['class_agreement'])} of the files)"
            for name, row in _tree_precisions(src)
        )
    )


def _tree_precisions(src: Sources) -> list[tuple[str, dict[str, Any]]]:
    """The FITS tree's 2-worker rows in the faster precisions, by precision name."""
    prefix = "classify FITS tree, local, 2 worker(s), --precision "
    return [
        (r["case"].removeprefix(prefix), r)
        for r in src.json("classify-20000-files")["rows"]
        if r.get("section") == "fits-tree" and r["case"].startswith(prefix)
    ]


def _percent(share: float) -> str:
    """A share as a percentage, rounded down: a difference never shows as 100 %."""
    text = f"{math.floor(share * 10_000) / 100:.2f}".rstrip("0").rstrip(".")
    return f"{text} %"


def simulate_lamost_rate(src: Sources) -> str:
    """The whole `spectraldl simulate --archive lamost` command with 2 workers, files/s: at
    archive scale, and on the benchmark's smaller run, where its start-up weighs more."""
    scale = src.row("simulate", case=SIMULATE_AT_SCALE, workers=2)
    small = src.row("simulate", case=SIMULATE_COMMAND, workers=2)
    return (
        f"{num(scale['files_per_s'])} files/s making {num(scale['files'])} files "
        f"({num(small['files_per_s'])} making {num(small['files'])}, where its half second "
        "of start-up weighs more)"
    )


def _second_worker(src: Sources, files: str) -> str:
    """The gain of a second ingest worker: start-up left out, and whole runs."""

    def rows(method: str) -> list[dict[str, Any]]:
        return [src.row(n, files=files, method=method) for n in ("ingest", "ingest-20000-files")]

    def ratios(method: str) -> str:
        return span((r["vs_1_worker"] for r in rows(method)), lambda v: f"{v:.2f}") + "x"

    whole = "spectraldl ingest, 2 workers"
    sizes = span((r["n_files"] for r in rows(whole)), num)
    counts = [len(r.get("round_ratios", [])) for r in rows(whole + ", start-up left out")]
    rounds = span(counts, str)
    paired = f", medians of {rounds} rounds alternated with 1 worker" if min(counts) > 1 else ""
    return (
        f"{ratios(whole + ', start-up left out')} once start-up is left out{paired} "
        f"({ratios(whole)} for whole runs of {sizes} files)"
    )


def ingest_two_workers_plain(src: Sources) -> str:
    """Plain files: the gain of a second worker."""
    return _second_worker(src, "plain")


def ingest_two_workers_gzip(src: Sources) -> str:
    """Gzipped files: the gain of a second worker."""
    return _second_worker(src, "gzip")


def _ingest_vs_thesis(src: Sources) -> tuple[str, bool]:
    """One ingest worker against the thesis' reading, plain and gzipped files, start-up left
    out (both >= 20x?) and whole commands."""

    def times(method: str) -> dict[str, float]:
        return {
            files: src.row("ingest", files=files, method=method)["vs_thesis"]
            for files in ("plain", "gzip")
        }

    steady = times("spectraldl ingest, 1 worker, start-up left out")
    whole = times("spectraldl ingest, 1 worker")
    n_files = num(src.row("ingest", files="plain", method="spectraldl ingest, 1 worker")["n_files"])
    text = (
        f"{steady['plain']:.2f}x on plain files, {steady['gzip']:.2f}x gzipped (whole commands "
        f"on {n_files} files, start-up included: {whole['plain']:.1f}x, {whole['gzip']:.1f}x)"
    )
    return text, min(steady.values()) >= GOALS["ingest-vs-thesis"]


def _second_worker_met(src: Sources) -> bool:
    """Does a second ingest worker gain the goal, start-up left out, in every run and kind?"""
    method = "spectraldl ingest, 2 workers, start-up left out"
    return all(
        src.row(n, files=f, method=method)["vs_1_worker"] >= GOALS["ingest-second-worker"]
        for n in ("ingest", "ingest-20000-files")
        for f in ("plain", "gzip")
    )


def readme_goals(src: Sources) -> str:
    """The performance goals against the latest measurements: met or not, where and when."""
    one, most = dataset_rows(src, FP32_DEFAULT)
    tree = src.row(
        "classify-20000-files", section="fits-tree", case="classify FITS tree, local, 2 worker(s)"
    )
    simulate = src.row("simulate", case=SIMULATE_AT_SCALE, workers=2)
    largest = _memory_runs(src)[-1]
    ingest_text, ingest_met = _ingest_vs_thesis(src)
    rows = [
        (
            f"ingest, 1 worker, start-up left out: >= {GOALS['ingest-vs-thesis']:.0f}x the "
            "thesis' reading",
            ingest_text,
            ingest_met,
            ["ingest"],
        ),
        (
            f"ingest: a second worker gains >= {GOALS['ingest-second-worker']}x "
            "(start-up left out)",
            f"plain files {ingest_two_workers_plain(src)}; gzipped {ingest_two_workers_gzip(src)}",
            _second_worker_met(src),
            ["ingest", "ingest-20000-files"],
        ),
        (
            "`simulate --archive lamost`, whole command, 2 workers: "
            f">= {num(GOALS['simulate-files-per-s'])} files/s",
            simulate_lamost_rate(src),
            simulate["files_per_s"] >= GOALS["simulate-files-per-s"],
            ["simulate"],
        ),
        (
            f"classify a dataset, thesis CNN, default fp32: >= {GOALS['cpu-fp32-ratio']:.0f}x a "
            "plain fp32 PyTorch loop",
            f"{cpu_fp32_ratio(src)}; `--precision int8` {cpu_int8_ratio(src)}",
            min(ratio(one), ratio(most)) >= GOALS["cpu-fp32-ratio"],
            ["classify"],
        ),
        (
            "FITS tree to predictions on 2 cores: LAMOST DR1 (2.2 million files) in "
            f"<= {GOALS['dr1-minutes']:.0f} min",
            dr1_goal(src),
            tree["projected_dr1_min"] <= GOALS["dr1-minutes"],
            ["classify-20000-files"],
        ),
        (
            f"GPU, thesis CNN from a dataset: >= {millions(GOALS['gpu-spectra-per-s'], 0)} million "
            "spectra/s",
            f"{gpu_cnn_millions(src)} million/s bf16: {gpu_cnn_peak_share(src)}; "
            f"`cnn-small` {gpu_small_millions(src)} million/s",
            _gpu_classify(src, "cnn")["spectra_per_s"] >= GOALS["gpu-spectra-per-s"],
            ["classify-gpu-h100"],
        ),
        (
            "classify a tree of 1 million files: peak memory "
            f"< {GOALS['memory-mib'] / 1024:.0f} GB",
            memory_largest(src),
            largest["files"] >= 1_000_000 and largest["peak_rss_mib"] < GOALS["memory-mib"],
            ["memory"],
        ),
    ]
    host = _gpu_host_goal(src)
    if host is not None:
        rows.append(host)
    lines = ["| goal | measured | met | machine, date |", "|---|---|---|---|"]
    for goal, measured, met, names in rows:
        where = "; ".join(
            sorted({f"{machine(src, n)}, {src.json(n).get('date', 'undated')}" for n in names})
        )
        lines.append(f"| {goal} | {measured} | {'yes' if met else '**no**'} | {where} |")
    if host is None:
        lines.append(
            f"| {GPU_HOST_GOAL} | not measured: `benchmarks/gpu.sh` measures it, and no GPU "
            "machine has run it yet | **no** | - |"
        )
    return "\n".join(lines)


def _gpu_host_goal(src: Sources) -> tuple[str, str, bool, list[str]] | None:
    """The GPU host's goal row from ``classify-host-tree.json`` (benchmarks/gpu.sh), or None
    until a GPU machine has written it."""
    name = "classify-host-tree"
    if not (src.root / BENCHMARKS / f"{name}.json").exists():
        return None
    cuda = src.row(name, device="cuda")
    return (
        GPU_HOST_GOAL,
        f"{num(cuda['files_per_s'])} files/s with {cuda['workers']} workers, the network on the "
        f"GPU (DR1 in {cuda['projected_dr1_min']:.1f} min)",
        cuda["files_per_s"] >= GOALS["gpu-host-files-per-s"],
        [name],
    )


def ratio(row: dict[str, Any]) -> float:
    """A dataset row's speed ratio to the plain loop: the median of the runs timed in turn
    with it where the benchmark made them (steadier on a shared machine), else best to best."""
    pairs = row.get("paired_ratios")
    return float(statistics.median(pairs)) if pairs else float(row["ratio"])


def spread(row: dict[str, Any]) -> str:
    """``median of 5 runs in turn with the baseline, 1.75-1.94`` where the row has them."""
    pairs = row.get("paired_ratios")
    if not pairs:
        return ""
    return f"median of {len(pairs)} runs in turn with the baseline, {span(pairs, '{:.2f}'.format)}"


def _with(main: str, *notes: str) -> str:
    """``main (note; note)`` without the empty notes."""
    kept = [n for n in notes if n]
    return f"{main} ({'; '.join(kept)})" if kept else main


def cpu_fp32_ratio(src: Sources) -> str:
    """The thesis CNN's predictor vs a plain fp32 loop on CPU, all cores (one thread)."""
    one, most = dataset_rows(src, FP32_DEFAULT)
    if most is one:
        return _with(f"{ratio(one):.2f}x on one thread", spread(one))
    return _with(
        f"{ratio(most):.2f}x on {most['threads']} threads",
        spread(most),
        f"{ratio(one):.2f}x on one",
    )


def cpu_int8_ratio(src: Sources) -> str:
    """int8 vs the plain fp32 loop on CPU, all cores."""
    return f"{dataset_rows(src, INT8)[1]['ratio']:.2f}x"


# --- docs/training.md -------------------------------------------------------


def training_cpu_speed(src: Sources) -> str:
    """Seconds per epoch and inference speed per network, CPU."""
    lines = [
        "| | plain PyTorch loop | spectraldl | speed-up |",
        "|---|---|---|---|",
    ]
    label = {
        "cnn": "cnn, s per epoch of {n} spectra (+ validation)",
        "cnn-small": "cnn-small",
        "fnn": "fnn",
    }
    for model, text in label.items():
        ours = src.row("train", section="cpu train", model=model, method="spectraldl")
        plain = src.row(
            "train", section="cpu train", model=model, method="plain PyTorch loop (baseline)"
        )
        lines.append(
            f"| {text.format(n=num(ours['spectra_per_epoch']))} | {sig(plain['s_per_epoch'])} "
            f"| {sig(ours['s_per_epoch'])} | {ours['speedup']:.2f} |"
        )
    lines += ["", "| inference, `predict_proba` | spectra/s | vs cnn |", "|---|---|---|"]
    for model in label:
        row = src.row("train", section="cpu inference", model=model)
        lines.append(f"| {model} | {num(row['spectra_per_s'])} | {sig(row['speedup'])} |")
    return "\n".join([*lines, "", measured_on(src, "train")])


def training_small_vs_cnn(src: Sources) -> str:
    """How many times faster cnn-small infers than the thesis CNN on CPU."""
    return f"{src.row('train', section='cpu inference', model='cnn-small')['speedup']:.0f}"


def classify_small_vs_cnn(src: Sources) -> str:
    """cnn-small against the thesis CNN, both through classify's default predictor, one thread."""
    rows = [
        r
        for r in src.json("classify")["rows"]
        if r["section"] == "dataset-cpu" and r["method"] == FP32_DEFAULT and r["threads"] == 1
    ]
    speed = {r["model"]: r["spectra_per_s"] for r in rows}
    return (
        f"{speed['cnn-small'] / speed['cnn']:.0f} times through `classify`'s default predictor "
        f"({num(speed['cnn-small'])} against {num(speed['cnn'])} spectra/s on one thread, "
        f"{machine(src, 'classify')}, {src.json('classify')['date']})"
    )


def training_cpu_speedups(src: Sources) -> str:
    """The trainer's speed-up over a plain loop on CPU, per network."""
    speedups = [
        f"{src.row('train', section='cpu train', model=m, method='spectraldl')['speedup']:.2f}x "
        f"for {m}"
        for m in ("cnn", "cnn-small")
    ]
    return ", ".join(speedups)


def int8_agreement(src: Sources) -> str:
    """The share of spectra int8 gives the plain fp32 loop's class, in per cent (worst run)."""
    rows = [r for r in src.json("classify")["rows"] if r.get("method") == INT8]
    return f"{100 * min(r['argmax_agreement'] for r in rows):.1f}"


def int8_vs_fp32(src: Sources) -> str:
    """int8 against the default fp32 predictor on one thread, the thesis CNN."""
    one = dataset_rows(src, INT8)[0]
    fp32 = dataset_rows(src, FP32_DEFAULT)[0]
    return f"{one['spectra_per_s'] / fp32['spectra_per_s']:.1f}"


def chunk_seconds(src: Sources) -> str:
    """Seconds of one core's work for a chunk of 512 LAMOST files (the per-stage times)."""
    return f"{512 * sum(r['ms_per_file'] for r in _tree_stages(src)) / 1000:.1f}"


def _first_seconds(src: Sources, name: str, method: str) -> float:
    """What a GPU run spent beyond its steady epochs: warm-up, compiling, graph capture."""
    row = src.row(name, method=method)
    return row["seconds"] - row["epochs"] * row["s_per_epoch_steady"]


def training_compile_seconds(src: Sources) -> str:
    """Seconds torch.compile's default mode adds to a run (beyond its steady epochs)."""
    return f"{_first_seconds(src, 'train-gpu-h100', 'spectraldl bf16 + torch.compile'):.0f}"


def training_first_seconds(src: Sources) -> str:
    """The CUDA-graph run's first seconds without and with channels-last."""
    name = "train-gpu-h100-cuda-graph"
    graph = _first_seconds(src, name, "spectraldl bf16 + CUDA graph")
    last = _first_seconds(src, name, "spectraldl bf16 + CUDA graph + channels-last")
    return f"about {graph:.1f} s to about {last:.1f} s"


def training_gpu_vs_thesis(src: Sources) -> str:
    """How many times the thesis' 8 min 21 s is the fastest 229-epoch run."""
    row = src.row(
        "train-gpu-h100-cuda-graph", method="spectraldl bf16 + CUDA graph + channels-last"
    )
    return f"{THESIS_TRAIN_S / row['seconds']:.0f}"


def training_gpu(src: Sources) -> str:
    """The thesis' 229-epoch run on GPUs, every variant measured."""
    names = ("train-gpu-h100", "train-gpu-h100-cuda-graph", "train-gpu-graph-h200")
    lines = [
        "| GPU | method | seconds for 229 epochs | steady s/epoch "
        "| ratio to the plain loop of the same run |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        gpu = src.json(name)["machine"]["gpu"].replace("NVIDIA ", "").split()[0]
        for row in src.json(name)["rows"]:
            steady = f"{row['s_per_epoch_steady']:.3f}" if "s_per_epoch_steady" in row else ""
            lines.append(
                f"| {gpu} | {row['method']} | {row['seconds']:.1f} | {steady} | "
                f"{row['speedup']:.2f} |"
            )
    return "\n".join([*lines, "", measured_on(src, *names)])


def training_gpu_best(src: Sources) -> str:
    """The fastest 229-epoch run (seconds)."""
    row = src.row(
        "train-gpu-h100-cuda-graph", method="spectraldl bf16 + CUDA graph + channels-last"
    )
    return f"{row['seconds']:.1f} s"


# --- docs/classify.md -------------------------------------------------------


def classify_cpu(src: Sources) -> str:
    """CPU speed from a dataset and from a FITS tree."""

    def threads(row: dict[str, Any]) -> str:
        return "1 thread" if row["threads"] == 1 else f"{row['threads']} threads"

    fp32_1, fp32 = dataset_rows(src, FP32_DEFAULT)
    int8 = dataset_rows(src, INT8)[1]
    base_1, base = dataset_rows(src, BASELINE)
    tree = "classify-20000-files"
    t2 = src.row(tree, section="fits-tree", case="classify FITS tree, local, 2 worker(s)")
    t1 = src.row(tree, section="fits-tree", case="classify FITS tree, local, 1 worker(s)")
    d2 = src.row("classify", section="dask", case="Dask LocalCluster, 2 worker(s)")
    d1 = src.row("classify", section="dask", case="Dask LocalCluster, 1 worker(s)")
    lines = [
        "| what | spectraldl | baseline in the same run | ratio |",
        "|---|---|---|---|",
        *(
            f"| thesis CNN from a dataset, fp32, {threads(row)} | {num(row['spectra_per_s'])} "
            f"spectra/s | plain fp32 loop, batch {loop['batch']}, {threads(loop)}: "
            f"{num(loop['spectra_per_s'])}/s | {_with(f'{ratio(row):.2f}', spread(row))} |"
            for row, loop in [(fp32_1, base_1), *([(fp32, base)] if fp32 is not fp32_1 else [])]
        ),
        f"| thesis CNN from a dataset, `--precision int8`, {threads(int8)} | "
        f"{num(int8['spectra_per_s'])} spectra/s (arg-max agreement "
        f"{int8['argmax_agreement']:.4f}) | the same loop | {int8['ratio']:.2f} |",
        f"| FITS tree end to end, {_tree_model(t2)}, 2 workers ({num(t2['files'])} files) | "
        f"{num(t2['files_per_s'])} files/s: DR1 (2.2 million) in {t2['projected_dr1_min']:.1f} min "
        f"| 1 worker: {num(t1['files_per_s'])} files/s | {t2['ratio']:.2f} |",
        *(
            f"| the same, `--precision {name}` | {num(row['files_per_s'])} files/s: DR1 in "
            f"{row['projected_dr1_min']:.1f} min, the same class as fp32 for "
            f"{_percent(row['class_agreement'])} of the files | fp32, 2 workers: "
            f"{num(t2['files_per_s'])} files/s | {row['files_per_s'] / t2['files_per_s']:.2f} |"
            for name, row in _tree_precisions(src)
        ),
        f"| Dask LocalCluster, 2 workers ({num(d2['files'])} files) | {num(d2['files_per_s'])} "
        f"files/s | 1 worker: {num(d1['files_per_s'])} files/s | {d2['ratio']:.2f} |",
    ]
    per_file = ", ".join(f"{r['stage']} {r['ms_per_file']:.2f} ms" for r in _tree_stages(src))
    return "\n".join(
        [
            *lines,
            "",
            f"Per file (one process, {num(t2['files'])} files): {per_file}.",
            "",
            network_vs_matmul(src),
            "",
            measured_on(src, "classify", tree),
        ]
    )


def network_vs_matmul(src: Sources) -> str:
    """The thesis CNN's CPU rate in GFLOP/s against a matrix product timed in the same run."""
    fp32 = dataset_rows(src, FP32_DEFAULT)[0]
    bf16 = dataset_rows(src, "spectraldl Predictor bf16 autocast")[0]
    direct = dataset_rows(src, "spectraldl Predictor fp32 without Winograd")[0]
    bf16_text = (
        f"; bf16 {bf16['gflops']:.0f} GFLOP/s, {bf16['of_matmul']:.2f}x the bf16 product"
        if bf16["of_matmul"] is not None
        else ""
    )
    limit = "at" if fp32["of_matmul"] >= 0.9 else "below"
    return (
        f"From a dataset on one thread, the thesis CNN's default fp32 predictor runs at "
        f"{fp32['gflops']:.0f} GFLOP/s, counting its convolutions and dense layers as direct "
        f"multiply-adds: {fp32['of_matmul']:.2f}x a large fp32 matrix product timed on the "
        f"same core in the same run (without Winograd's convolutions {direct['of_matmul']:.2f}x: "
        f"Winograd does fewer multiplications than the count){bf16_text}. In fp32 the network "
        f"is {limit} the core's arithmetic limit."
    )


def _tree_model(row: dict[str, Any]) -> str:
    """The network of a FITS-tree row (runs before it was recorded used cnn-small)."""
    model = row.get("model", "cnn-small")
    return "the thesis CNN" if model == "cnn" else str(model)


def classify_small_tree_dr1(src: Sources) -> str:
    """DR1 projected from the small (2 000-file) tree, 2 workers, in minutes."""
    row = src.row("classify", section="fits-tree", case="classify FITS tree, local, 2 worker(s)")
    return f"{row['projected_dr1_min']:.0f}"


def readme_per_million(src: Sources) -> str:
    """Expected minutes per million LAMOST files: measured on 2 cores, derived for a GPU host."""
    name = "classify-20000-files"
    two = src.row(name, section="fits-tree", case="classify FITS tree, local, 2 worker(s)")
    stages = _tree_stages(src)
    total = sum(r["ms_per_file"] for r in stages)
    network = sum(r["ms_per_file"] for r in stages if r["stage"].startswith("predict"))
    return (
        f"about {1e6 / two['files_per_s'] / 60:.0f} minutes per million files on 2 cores "
        f"({num(two['files_per_s'])} files/s with 2 workers, {_tree_model(two)}, "
        f"{machine(src, name)}, {src.json(name)['date']}). On a GPU machine the network is "
        f"not what limits: of the {total:.2f} ms one CPU core spends per file, "
        f"{total - network:.2f} ms is reading, preprocessing and writing, so a million files "
        f"take about {1e6 * (total - network) / 1000 / 60:.0f} minutes divided by the CPU cores "
        "given to "
        "`--workers` (derived from the per-stage times; not yet measured on a GPU host)"
    )


def classify_gpu(src: Sources) -> str:
    """Spectra/s on a GPU from a dataset, every method measured."""
    name = "classify-gpu-h100"
    lines = [
        "| network | method | batch | spectra/s | ratio | arg-max as the plain loop |",
        "|---|---|---|---|---|---|",
    ]
    for row in src.json(name)["rows"]:
        if row.get("section") != "gpu":
            continue
        network = "cnn (thesis)" if row["model"] == "cnn" else row["model"]
        lines.append(
            f"| {network} | {row['method'].removeprefix('spectraldl ')} | {num(row['batch'])} | "
            f"{num(row['spectra_per_s'])} | {row['ratio']:.2f} | "
            f"{row['argmax_agreement']:.4f} |"
        )
    return "\n".join([*lines, "", measured_on(src, name)])


# --- docs/simulate.md -------------------------------------------------------


def simulate_speed(src: Sources) -> str:
    """The FITS writer against astropy, and archives with 1 and 2 workers."""
    label = {
        "write+gzip DR1: astropy HDUList.writeto (baseline)": (
            "write + gzip DR1: astropy `HDUList.writeto` (baseline)"
        ),
        "write+gzip DR1: fitsbytes": "write + gzip DR1: `simulate.fitsbytes`",
        "lamost dr1 archive": "LAMOST DR1 archive (gzipped, 1 % junk)",
        SIMULATE_COMMAND: "LAMOST DR1 archive, the whole `spectraldl simulate`",
        SIMULATE_AT_SCALE: "LAMOST DR1 archive, the whole `spectraldl simulate`, archive scale",
        "ondrejov ssap archive": "Ondřejov SSAP archive",
    }
    lines = [
        "| case | workers | files | seconds | files/s | CPU ms/file | of it kernel | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for row in src.json("simulate")["rows"]:
        ratio = "-" if row["ratio_vs_baseline"] is None else f"{row['ratio_vs_baseline']:.2f}"
        lines.append(
            f"| {label.get(row['case'], row['case'])} | {row['workers']} | {num(row['files'])} | "
            f"{row['seconds']:.2f} | {num(row['files_per_s'])} | {ms(row['cpu_ms_per_file'])} | "
            f"{ms(row['sys_ms_per_file'])} | {ratio} |"
        )
    return "\n".join([*lines, "", measured_on(src, "simulate")])


def simulate_realism(src: Sources) -> str:
    """Discriminator AUC per set, with the naive baseline and false emission rates."""
    lines = [
        "| set | real | synthetic | discriminator AUC (goal <= 0.7) | naive baseline AUC "
        "| real ordinary stars called emission/double-peak | same, naive training set |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"dev": "dev (tuned on)", "holdout": "holdout (never tuned on)"}
    for row in src.json("realism")["rows"]:
        lines.append(
            f"| {names.get(row['set'], row['set'])} | {row['n_real']} | {row['n_synthetic']} | "
            f"**{row['auc']:.2f} ± {row['auc_sd']:.2f}** | {row['auc_naive_baseline']:.2f} ± "
            f"{row['auc_naive_sd']:.2f} | **{row['false_emission_rate']:.0%}** | "
            f"{row['false_emission_rate_naive']:.0%} |"
        )
    return "\n".join([*lines, "", measured_on(src, "realism")])


def simulate_yardstick(src: Sources) -> str:
    """Real plate vs plate against real vs synthetic."""
    words = {
        "real dev vs real same plate": "real dev vs real, other fibres of the same plate (B6212)",
        "real dev vs real other plates": "real dev vs real, other plates and releases (holdout)",
    }
    lines = ["| pair (F-G-K stars) | n | AUC |", "|---|---|---|"]
    for row in src.json("realism")["plate_yardstick"]:
        n = " vs ".join(str(v) for v in row["n"])
        lines.append(
            f"| {words.get(row['pair'], row['pair'])} | {n} "
            f"| {row['auc']:.2f} ± {row['auc_sd']:.2f} |"
        )
    return "\n".join([*lines, "", measured_on(src, "realism")])


def simulate_writer_ratio(src: Sources) -> str:
    """The FITS writer's speed-up over astropy."""
    return f"{src.row('simulate', case='write+gzip DR1: fitsbytes')['ratio_vs_baseline']:.1f}x"


# --- docs/training.md: active learning -------------------------------------


def active_learning(src: Sources) -> str:
    """Emission-line F1 per strategy and labels, with the start, the ceiling and the goals."""
    data = src.json("active_learning")
    settings, goals = data["settings"], data["goals"]
    lines = [
        "| labels | entropy F1 | margin F1 | random F1 | entropy: forgetting-test accuracy |",
        "|---|---|---|---|---|",
        f"| 0 (start) | {data['start']['f1']:.2f} | {data['start']['f1']:.2f} | "
        f"{data['start']['f1']:.2f} | {data['start']['forget_accuracy']:.3f} |",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['labels']} | {row['entropy F1']:.2f} | {row['margin F1']:.2f} | "
            f"{row['random F1']:.2f} | {row['entropy forget acc']:.3f} |"
        )
    within = goals["entropy_labels_to_within_1_point_of_ceiling"]
    summary = (
        f"Mean over {settings['seeds']} seeds; pool {num(settings['pool'])} and test pool "
        f"{num(settings['test'])} LAMOST-like spectra with plate systematics at "
        f"{settings['prevalence']:.0%} emission-line prevalence; {settings['batch']} labels per "
        f"iteration. The model trained on the whole labelled pool (the ceiling) reaches F1 "
        f"{goals['ceiling_f1_mean']:.2f}. Entropy sampling "
        + (
            f"comes within 1 F1 point of it with {within} labels"
            if within
            else f"does not come within 1 F1 point of it in {settings['iterations']} iterations"
        )
        + "; it is better than random at every iteration: "
        + ("yes" if goals["entropy_better_than_random_at_every_iteration"] else "no")
        + f". Forgetting (Ondřejov-like test accuracy, start minus last): "
        f"{goals['forgetting_points_entropy_last']:.1f} points."
    )
    return "\n".join([*lines, "", summary, "", measured_on(src, "active_learning")])


# --- docs/explore.md --------------------------------------------------------


def explore_tsne(src: Sources) -> str:
    """openTSNE against scikit-learn on the same spectra."""
    columns = (
        "backend",
        "n",
        "seconds",
        "cpu_seconds",
        "speed_vs_sklearn",
        "knn_10_preserved",
        "trustworthiness_10",
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in src.json("explore")["rows"]:
        cells = [
            row["backend"],
            num(row["n"]),
            f"{row['seconds']:.0f}",
            f"{row['cpu_seconds']:.0f}",
            f"{row['speed_vs_sklearn']:.2f}",
            f"{row['knn_10_preserved']:.3f}",
            f"{row['trustworthiness_10']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", measured_on(src, "explore")])


def explore_tsne_wall(src: Sources) -> str:
    """openTSNE's wall-time speed-up."""
    return f"{src.row('explore', backend='opentsne')['speed_vs_sklearn']:.2f}"


def explore_tsne_cpu(src: Sources) -> str:
    """openTSNE's CPU-time speed-up."""
    sk = src.row("explore", backend="sklearn")["cpu_seconds"]
    return f"{sk / src.row('explore', backend='opentsne')['cpu_seconds']:.1f}"


# --- docs/web.md ------------------------------------------------------------


def web_speed(src: Sources) -> str:
    """Server throughput and the labelling page's response."""
    health = src.row("web", measure="GET /api/health (baseline)")
    spectrum = src.row("web", measure="GET /api/spectra/{id}")
    one = src.row("web", measure="labelling flow (queue, spectrum, label)", clients=1)
    four = src.row("web", measure="labelling flow (queue, spectrum, label)", clients=4)
    key = src.row("web", measure="key press to next spectrum drawn")
    page = src.row("web", measure="page load to spectrum drawn (baseline)")
    data = src.json("web")
    lines = [
        f"| measure ({data['database']}, {num(data['spectra'])} spectra) | result |",
        "|---|---|",
        f"| `GET /api/health` (baseline) | {health['requests_per_s']:.0f} requests/s |",
        f"| `GET /api/spectra/{{id}}` (the three views' arrays) | "
        f"{spectrum['requests_per_s']:.0f} requests/s, {spectrum['ms_mean']:.0f} ms mean |",
        f"| labelling flow (next in queue, spectrum, label), 1 labeller | "
        f"{one['flows_per_s']:.1f} flows/s ({one['requests_per_s']:.0f} requests/s) |",
        f"| the same, 4 labellers at once | {four['flows_per_s']:.1f} flows/s "
        f"({four['requests_per_s']:.0f} requests/s) |",
        f"| key press to next spectrum drawn (Chromium, {key['n']} presses) | median "
        f"{key['ms_median']:.1f} ms, 90th percentile {key['ms_p90']:.1f} ms, worst "
        f"{key['ms_max']:.0f} ms |",
        f"| loading the labelling page for one spectrum (baseline, {page['n']} loads) | "
        f"median {page['ms_median']:.0f} ms |",
    ]
    return "\n".join([*lines, "", measured_on(src, "web")])


def web_vetting(src: Sources) -> str:
    """Vetting at survey scale: the grid view, bulk verdicts, precision."""
    single = src.row("web", measure="key presses per verdict", view="single")
    grid = src.row("web", measure="key presses per verdict", view="grid")
    keyed = src.row("web", measure="grid page of 48 tiles: key press to drawn")
    drawn = src.row("web", measure="grid page of 48 tiles: JSON arrival to drawn")
    imported = src.row("web", measure="import a catalogue (upload to ready)")
    order = src.row("web", measure="similarity order (first grid page)")
    page = src.row("web", measure="GET grid page of 48 (order stored)")
    bulk = src.row("web", measure="bulk vetting in calls of 500")
    counted = src.row("web", measure="GET /api/catalogues/{id}/precision, first (counted)")
    cold = src.row("web", measure="GET /api/catalogues/{id}/precision after a new verdict")
    warm = src.row("web", measure="GET /api/catalogues/{id}/precision, no new verdict")
    n = num(imported["candidates"])
    lines = [
        "| measure | result |",
        "|---|---|",
        f"| key presses per verdict, single view | {single['keys_per_verdict']:.2f} "
        f"({single['keys']} keys, {single['verdicts']} verdicts) |",
        f"| key presses per verdict, grid view | {grid['keys_per_verdict']:.3f} "
        f"({grid['keys']} keys, {num(grid['verdicts'])} verdicts) |",
        f"| grid page of 48 tiles drawn after the key press (Chromium, {keyed['n']} pages) | "
        f"median {keyed['ms_median']:.0f} ms, 95th percentile {keyed['ms_p95']:.0f} ms |",
        f"| grid page of 48 tiles drawn after its JSON arrived ({drawn['n']} loads) | "
        f"median {drawn['ms_median']:.0f} ms, 95th percentile {drawn['ms_p95']:.0f} ms |",
        f"| upload and import of {n} candidates | {imported['seconds']:.1f} s "
        f"({num(imported['rows_per_s'])} rows/s) |",
        f"| their similarity order (once, on the first grid page) | {order['seconds']:.1f} s |",
        f"| a grid page of 48 of them (`GET .../grid`) | median {page['ms_median']:.0f} ms |",
        f"| vetting all {n} in bulk, 500 a call | {bulk['seconds']:.1f} s "
        f"({num(bulk['verdicts_per_s'])} verdicts/s; a call: median "
        f"{bulk['ms_median']:.0f} ms, 95th percentile {bulk['ms_p95']:.0f} ms) |",
        f"| `GET /api/catalogues/{{id}}/precision` on {n} verdicts, the first request "
        f"(all counted) | {counted['ms_median']:.0f} ms |",
        f"| the same after each new verdict ({cold['n']} verdicts; only their candidates "
        f"recounted) | median {cold['ms_median']:.0f} ms, 95th percentile "
        f"{cold['ms_p95']:.0f} ms |",
        f"| the same, no verdict added since | median {warm['ms_median']:.0f} ms |",
    ]
    return "\n".join([*lines, "", measured_on(src, "web")])


RENDERERS: dict[str, Callable[[Sources], str]] = {
    "readme-demo": readme_demo,
    "readme-demo-time": readme_demo_time,
    "readme-per-million": readme_per_million,
    "active-learning": active_learning,
    "readme-performance": readme_performance,
    "realism-auc": realism_auc,
    "realism-naive-auc": realism_naive_auc,
    "realism-details": realism_details,
    "ondrejov-template-resolution": ondrejov_template_resolution,
    "high-snr-scatter": high_snr_scatter,
    "realism-plate-synthetic": realism_plate_synthetic,
    "realism-plate-plate": realism_plate_plate,
    "gpu-cnn-millions": gpu_cnn_millions,
    "gpu-cnn-peak-share": gpu_cnn_peak_share,
    "reading-rate": reading_rate,
    "gpu-small-millions": gpu_small_millions,
    "measure-cost": measure_cost,
    "classify-memory": classify_memory,
    "memory-largest": memory_largest,
    "readme-goals": readme_goals,
    "simulate-lamost-rate": simulate_lamost_rate,
    "ingest-2-workers-plain": ingest_two_workers_plain,
    "ingest-2-workers-gzip": ingest_two_workers_gzip,
    "cpu-fp32-ratio": cpu_fp32_ratio,
    "cpu-int8-ratio": cpu_int8_ratio,
    "training-cpu-speed": training_cpu_speed,
    "training-small-vs-cnn": training_small_vs_cnn,
    "classify-small-vs-cnn": classify_small_vs_cnn,
    "training-cpu-speedups": training_cpu_speedups,
    "int8-agreement": int8_agreement,
    "int8-vs-fp32": int8_vs_fp32,
    "chunk-seconds": chunk_seconds,
    "sky-lines-matched": sky_lines_matched,
    "training-gpu-vs-thesis": training_gpu_vs_thesis,
    "training-compile-seconds": training_compile_seconds,
    "training-first-seconds": training_first_seconds,
    "training-gpu": training_gpu,
    "training-gpu-best": training_gpu_best,
    "classify-cpu": classify_cpu,
    "classify-small-tree-dr1": classify_small_tree_dr1,
    "classify-gpu": classify_gpu,
    "simulate-speed": simulate_speed,
    "simulate-realism": simulate_realism,
    "simulate-yardstick": simulate_yardstick,
    "simulate-writer-ratio": simulate_writer_ratio,
    "explore-tsne": explore_tsne,
    "explore-tsne-wall": explore_tsne_wall,
    "explore-tsne-cpu": explore_tsne_cpu,
    "web-speed": web_speed,
    "web-vetting": web_vetting,
}


def render_page(text: str, src: Sources, page: str = "page") -> str:
    """``text`` with every measured region regenerated.

    A region whose content starts with a newline is a block: the rendered text
    is put on lines of its own.
    """

    def replace(match: re.Match[str]) -> str:
        name, old = match.group(1), match.group(2)
        if name not in RENDERERS:
            raise DocsError(f"{page}: no renderer for <!-- measured: {name} -->")
        new = RENDERERS[name](src)
        if old.startswith("\n"):
            new = f"\n{new}\n"
        return f"<!-- measured: {name} -->{new}<!-- /measured -->"

    return REGION.sub(replace, text)


def pages(root: Path) -> list[Path]:
    """README.md and every page under docs/."""
    found: list[Path] = []
    for pattern in PAGES:
        found += sorted(root.glob(pattern))
    return found


def run(root: Path, *, check: bool) -> list[str]:
    """Regenerate (or with ``check``, compare) every page; return the differences found."""
    src = Sources(root)
    problems: list[str] = []
    for path in pages(root):
        text = path.read_text()
        rel = path.relative_to(root).as_posix()
        new = render_page(text, src, rel)
        if new == text:
            continue
        if check:
            diff = difflib.unified_diff(
                text.splitlines(),
                new.splitlines(),
                f"{rel} (page)",
                f"{rel} (from JSON)",
                lineterm="",
            )
            problems.append("\n".join(diff))
        else:
            path.write_text(new)
            problems.append(f"{rel}: regenerated")
    return problems


def store_demo(run_dir: Path, root: Path) -> Path:
    """Keep the figures of a demo run (``run.json``, ``checks.json``) as ``demo.json``."""
    record = json.loads((run_dir / "run.json").read_text())
    checks = json.loads((run_dir / "checks.json").read_text())
    sys.path.insert(0, str(root / "benchmarks"))
    from _common import machine

    demo = {
        "date": record["created"][:10],
        "machine": machine(),
        "seed": record["seed"],
        "seconds": sum(step["seconds"] for step in record["steps"]),
        "steps": record["steps"],
        "checks": checks,
    }
    path = root / BENCHMARKS / "demo.json"
    path.write_text(json.dumps(demo, indent=1, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate, or ``--check``; ``--from-demo RUN_DIR`` first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to work on")
    parser.add_argument("--from-demo", type=Path, help="store a demo run's figures first")
    args = parser.parse_args(argv)
    if args.from_demo is not None:
        print(f"stored {store_demo(args.from_demo, args.root)}")
    try:
        problems = run(args.root, check=args.check)
    except DocsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    if args.check and problems:
        print(f"\n{len(problems)} page(s) differ from their JSON: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
