"""What every benchmark shares: the machine record, JSON results, and the BENCHMARKS.md table."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.engine import resolve_device, wait_for_device

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def machine() -> dict[str, Any]:
    """Where and with what a result was produced."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    # A copy of the tree without .git (the GPU machine) is told its commit.
    commit = commit or os.environ.get("BENCH_COMMIT", "")
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        # The vector kernels torch picked (AVX2, AVX512...): hosts that all call themselves "AMD EPYC"
        # differ here, in speed and in float rounding, so a seeded run repeats exactly only on its kind.
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def mean_ci95(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% interval."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()) if len(v) else math.nan, math.nan
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(len(v)))


def write_result(name: str, payload: dict[str, Any], seed: int) -> Path:
    """Write results/<name>.json with the machine, the command and the seed."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join(["python -m engine", *sys.argv[1:]])
        if sys.argv[0].endswith("__main__.py")
        else " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "seed": seed,
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def update_markdown_section(name: str, markdown: str, path: Path | None = None) -> None:
    """Replace (or append) the section between this benchmark's markers in BENCHMARKS.md (or in
    ``path``, for results too detailed for it)."""
    path = BENCHMARKS_MD if path is None else path
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu']} ({m['cpu_kernels'] + ' kernels, ' if m.get('cpu_kernels') else ''}"
        f"{m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads"
        + (f", {m['cuda']}" if m.get("cuda") else "")
        + f"), commit {m['commit']}, {m['date']}"
    )


def rss_mb() -> float:
    """This process's resident memory now, MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports ru_maxrss in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# devices: the same scripts measure on CUDA with --device cuda (the GPU columns)
# ---------------------------------------------------------------------------------------------
def pick_device(name: str) -> torch.device:
    """The benchmark's device (the engine's own resolution); a clear exit when CUDA is asked for
    and there is none."""
    try:
        return resolve_device(name)
    except RuntimeError as exc:
        raise SystemExit(f"--device {name}: this machine has no CUDA device ({exc})") from exc


def ran_on_gpu(result: dict[str, Any]) -> bool:
    """Whether a saved result was measured on CUDA (results from before --device are CPU ones)."""
    return result["settings"].get("device", "cpu") == "cuda"


def peak_memory_text(gpu: bool) -> str:
    """What 'peak memory' means in a table, as ``memory_base_mb``/``memory_peak_mb`` measure it."""
    if gpu:
        return "peak allocated GPU memory during training minus what was allocated after setup"
    return "peak RSS during training minus RSS after setup"


def memory_base_mb(device: torch.device) -> float:
    """Memory in use now, MB, and (on CUDA) the peak counter reset: process RSS on the CPU,
    allocated tensor memory on CUDA."""
    if device.type == "cuda":
        wait_for_device(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return rss_mb()


def memory_peak_mb(device: torch.device) -> float:
    """Peak memory so far, MB, measured the way ``memory_base_mb`` measures."""
    if device.type == "cuda":
        wait_for_device(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def result_name(name: str, device: torch.device) -> str:
    """Results and BENCHMARKS.md sections of GPU runs sit beside the CPU ones: NAME_cuda."""
    return name if device.type == "cpu" else f"{name}_{device.type}"
