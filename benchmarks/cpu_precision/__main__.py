"""``python -m benchmarks.cpu_precision``: which CPU runtime and precision runs the network fastest,
at what memory and fidelity.

    .venv/bin/python -m benchmarks.cpu_precision --preset full --seed 0 --json out.json --markdown out.md

Per path (torch eager fp32; torch bf16 autocast, channels-last, also under ``torch.compile``;
ONNX Runtime fp32 and dynamic int8;
OpenVINO fp32, bf16 and on the int8 graph): set-up time, forward time (after ``--warmup`` untimed
forwards), peak RSS, ratio to eager fp32, and the deviation from eager fp32 on every gaussian field,
max and median of |diff| relative to the field's max |eager|, with the export's bound for that
precision (export/verify.py). Same weights (random, ``--seed``), same photo, batch 1. Each path runs
in its own process, one after another, so their memory peaks never add up. The CPU model and
flags, thread count, versions and load average are printed with the table. Random weights: the
times are timings only, and the deviations understate what the real checkpoint would show.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.cpu_precision.worker import GRAPH_PATHS, PATHS
from mlsharp.cpu_features import read_cpu_features
from mlsharp.triton.models import RAW_OUTPUT_NAMES

#: the export bound each path is judged by (export/verify.py TOLERANCES)
PATH_PRECISION = {
    "eager-bf16": "bf16", "eager-bf16-compile": "bf16", "ov-bf16": "bf16",
    "ort-int8": "int8", "ov-int8": "int8",
}  # fmt: skip
GIB = 1 << 30


def fidelity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per field: max and median |diff| / max|reference| (the issue's "relative to max |value|")."""
    result = {}
    for name in RAW_OUTPUT_NAMES:
        ref = reference[name].astype(np.float64)
        diff = np.abs(outputs[name].astype(np.float64) - ref)
        scale = max(float(np.abs(ref).max()), 1e-30)
        result[name] = {"max": float(diff.max()) / scale, "median": float(np.median(diff)) / scale}
    return result


def within_bound(path: str, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> bool:
    """Whether the export's numeric check for this precision would pass these outputs."""
    from export.verify import compare

    names = list(RAW_OUTPUT_NAMES)
    check = compare(
        path,
        PATH_PRECISION.get(path, "fp32"),
        [outputs[n] for n in names],
        [reference[n] for n in names],
        seconds=0.0,
    )
    return check.ok


def _worker(args: argparse.Namespace, *extra: str) -> None:
    command = [sys.executable, "-m", "benchmarks.cpu_precision.worker", "--preset", args.preset,
               "--seed", str(args.seed), "--threads", str(args.threads), *extra]  # fmt: skip
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def study(args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Run every path in its own process and collect timings, memory and fidelity."""
    paths = list(dict.fromkeys(["eager-fp32", *args.paths]))  # eager fp32 is the reference
    onnx = args.onnx
    export_s = None
    if onnx is None and args.reuse and (work / "onnx" / "model.onnx").is_file():
        onnx = work / "onnx" / "model.onnx"
    if onnx is None and GRAPH_PATHS & set(paths):
        onnx, start = work / "onnx" / "model.onnx", time.perf_counter()
        _worker(args, "--export-onnx", str(onnx))
        export_s = time.perf_counter() - start
    rows: dict[str, dict] = {}
    for path in paths:
        if args.reuse and (work / f"{path}.json").is_file() and (work / f"{path}.npz").is_file():
            print(f"reusing {path} from {work}", flush=True)
            rows[path] = json.loads((work / f"{path}.json").read_text())
            continue
        extra = [
            "--path",
            path,
            "--out",
            str(work),
            "--warmup",
            str(args.warmup),
            "--repeats",
            str(args.repeats),
        ]
        _worker(args, *extra, *(["--onnx", str(onnx)] if onnx else []))
        rows[path] = json.loads((work / f"{path}.json").read_text())
    reference = dict(np.load(work / "eager-fp32.npz"))
    base_s = float(np.median(rows["eager-fp32"]["forward_s"]))
    for path, row in rows.items():
        outputs = dict(np.load(work / f"{path}.npz"))
        row["median_forward_s"] = float(np.median(row["forward_s"]))
        row["ratio_to_eager_fp32"] = row["median_forward_s"] / base_s
        row["fidelity"] = fidelity(outputs, reference)
        row["bound"] = PATH_PRECISION.get(path, "fp32")
        row["within_bound"] = within_bound(path, outputs, reference)
    return {"onnx_export_s": export_s, "paths": rows}


def environment() -> dict[str, object]:
    """CPU, threads, versions and load: what the numbers depend on."""
    versions = {}
    for package in ("torch", "onnxruntime", "openvino"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    cpu = read_cpu_features()
    return {
        "cpu_model": cpu.model_name,
        "cpu_flags": cpu.relevant_flags(),
        "logical_cpus": os.cpu_count(),
        "versions": versions,
        "load_average_1min": os.getloadavg()[0],
    }


def markdown(result: dict, command: str) -> str:
    """The study as two markdown tables (speed/memory, fidelity) with the machine and command."""
    env = result["environment"]
    lines = [
        f"CPU: {env['cpu_model']} ({env['logical_cpus']} logical CPUs; flags: {' '.join(env['cpu_flags'])})",
        f"versions: {', '.join(f'{k} {v}' for k, v in env['versions'].items())}; "
        f"preset {result['preset']}, threads {result['threads'] or 'default'}, random weights seed "
        f"{result['seed']} (timings only); load average {env['load_average_1min']:.2f} before, "
        f"{result['load_average_after']:.2f} after",
        f"command: `{command}`",
        "",
        "| path | set-up s | first forward s | forward s | x eager fp32 | peak RSS GiB | within bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, row in result["paths"].items():
        setup = row["load_s"] + row.get("quantize_s", 0.0)
        first = f"{row['warmup_s']:.2f}" if row["warmup_s"] else "-"
        lines.append(
            f"| {path} | {setup:.2f} | {first} | {row['median_forward_s']:.2f} | "
            f"{row['ratio_to_eager_fp32']:.3f} | {row['peak_rss_bytes'] / GIB:.2f} | "
            f"{row['bound']}: {'yes' if row['within_bound'] else 'NO'} |"
        )
    names = {"mean_vectors": "means", "singular_values": "scales", "quaternions": "quaternions",
             "colors": "colours", "opacities": "opacities"}  # fmt: skip
    lines += [
        "",
        "Deviation from eager fp32, |diff| / max|eager| per field: max / median",
        "",
        "| path | " + " | ".join(names.values()) + " |",
        "|---|" + "---|" * len(names),
    ]
    for path, row in result["paths"].items():
        cells = [f"{row['fidelity'][n]['max']:.1e} / {row['fidelity'][n]['median']:.1e}" for n in names]
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _paths(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in PATHS]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PATHS)}, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cpu_precision", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--preset", choices=("test", "tiny", "full"), default="full")
    p.add_argument("--seed", type=int, default=0, help="random weights")
    p.add_argument("--onnx", type=Path, help="exported model.onnx of the same weights (default: export)")
    p.add_argument("--paths", type=_paths, default=list(PATHS), help=f"comma-separated: {', '.join(PATHS)}")
    p.add_argument("--threads", type=int, default=0, help="threads per runtime (0: its default)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards per path first")
    p.add_argument("--repeats", type=int, default=1, help="timed forwards per path")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument(
        "--reuse", action="store_true", help="keep paths (and the graph) already measured in --work"
    )
    p.add_argument("--json", type=Path, help="write the result as JSON here")
    p.add_argument("--markdown", type=Path, help="write the tables as markdown here")
    args = p.parse_args(argv)
    command = "python -m benchmarks.cpu_precision " + " ".join(sys.argv[1:] if argv is None else argv)
    result: dict[str, object] = {"preset": args.preset, "seed": args.seed, "threads": args.threads}
    result["environment"] = environment()
    with tempfile.TemporaryDirectory(prefix="cpu-precision-") as scratch:
        work = (args.work or Path(scratch)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        result |= study(args, work)
    result["load_average_after"] = os.getloadavg()[0]
    result["command"] = command
    table = markdown(result, command)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
