"""engine.allocator: glibc keeps freed tensor memory for reuse (fewer page faults per step)."""

import ctypes
import subprocess
import sys
import types

import pytest

from engine import allocator


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_the_thresholds_are_raised_and_the_setting_can_be_turned_off(monkeypatch) -> None:
    calls = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: types.SimpleNamespace(mallopt=mallopt))
    assert allocator.keep_freed_memory()
    assert calls == [(allocator.M_TRIM_THRESHOLD, 1 << 30), (allocator.M_MMAP_THRESHOLD, 1 << 30)]
    monkeypatch.setenv("CAUSAL_ENGINE_KEEP_FREED_MEMORY", "0")
    assert not allocator.keep_freed_memory() and len(calls) == 2


def test_a_libc_without_mallopt_is_left_alone(monkeypatch) -> None:
    def no_libc(name: str):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert not allocator.keep_freed_memory()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_freed_tensor_pages_are_reused_without_new_page_faults() -> None:
    # A fresh process allocates and frees a 64 MB tensor 20 times: with the thresholds raised the
    # pages stay mapped, so the later rounds cost (almost) no minor page faults; with malloc's
    # defaults every round maps and faults the block again.
    script = (
        "import resource, torch, engine\n"
        "torch.ones(16 << 20)\n"  # first touch of the block
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20): torch.ones(16 << 20)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )

    def faults(setting: str) -> int:
        env = {"CAUSAL_ENGINE_KEEP_FREED_MEMORY": setting, "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    kept, default = faults("1"), faults("0")
    pages = 20 * (64 << 20) // 4096  # what faulting every page of every round would cost
    assert default > pages // 2 and kept <= pages // 10, (kept, default)
