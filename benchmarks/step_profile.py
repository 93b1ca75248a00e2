"""One training step under torch's profiler: what a side's step waits on, kernel by kernel.

    python benchmarks/train.py ... --profile runs/profile      (every side; see train.py)

`benchmarks/train.py --profile DIR` profiles one warm step of each side (the third, or
the last when there are fewer) and leaves that step out of the side's timed tokens/s.
Per side it writes DIR/SIDE.ops.txt (torch's table of ops, by self time on the device
that ran them) and DIR/SIDE.trace.json.gz (a Chrome trace: chrome://tracing or
ui.perfetto.dev), and reports:

    GPU syncs       CUDA only: the times the host waited for the GPU (a GPU tensor's value
                    read back by `.item()`, `int()` or boolean indexing's `nonzero`, an
                    explicit synchronize); after each, the GPU idles until the host has
                    launched the next kernels
    aten ops        ops called in the step (each launches at least one kernel on a GPU)
    GPU busy        CUDA only: the kernels' summed time over the step's wall time; well
                    under 100 % means the GPU waits on the host (launches, syncs)
    top ops         the ops with the most self time on the step's device

The slow side's step is then readable next to the baseline's, on the same machine.
"""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path
from typing import Any

SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
"""CUDA runtime calls in which the host waits for the GPU (a value copied back to the
host ends in the first)."""


class StepProfile:
    """Profiles one step (the callback starts and stops it) and summarises it."""

    def __init__(self, out: Path, side: str) -> None:
        self.out, self.side = out, side
        self.profiler: Any = None
        self.started = 0.0
        self.seconds = 0.0

    def start(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
        self.profiler = profile(activities=activities)
        self.profiler.__enter__()
        self.started = time.perf_counter()

    def stop(self) -> None:
        """After the step's last kernel has finished (the caller synchronises first)."""
        self.seconds = time.perf_counter() - self.started
        self.profiler.__exit__(None, None, None)

    def summary(self) -> dict[str, Any]:
        """The step's figures; also writes the op table and the trace into `out`."""
        import torch

        cuda = torch.cuda.is_available()
        averages = self.profiler.key_averages()
        self_time = "self_device_time_total" if cuda else "self_cpu_time_total"
        ops = [e for e in averages if e.key.startswith("aten::")]
        top = sorted(ops, key=lambda e: -getattr(e, self_time))[:5]
        self.out.mkdir(parents=True, exist_ok=True)
        table = averages.table(sort_by=self_time, row_limit=60)
        (self.out / f"{self.side}.ops.txt").write_text(table + "\n")
        trace = self.out / f"{self.side}.trace.json"
        self.profiler.export_chrome_trace(str(trace))
        with trace.open("rb") as plain, gzip.open(f"{trace}.gz", "wb") as packed:
            shutil.copyfileobj(plain, packed)
        trace.unlink()
        busy = syncs = None
        if cuda:
            syncs = sum(e.count for e in averages if e.key in SYNCS)
            from torch.autograd import DeviceType

            events = self.profiler.events()
            kernels = [
                e for e in events if e.device_type == DeviceType.CUDA and not e.is_user_annotation
            ]
            busy = sum(e.self_device_time_total for e in kernels) / 1e6 / self.seconds
        return {
            "step_s": self.seconds,
            "gpu_syncs": syncs,
            "ops": sum(e.count for e in ops),
            "gpu_busy": busy,
            "top_ops": [(e.key, getattr(e, self_time) / 1e3) for e in top],  # (name, ms)
        }


def print_profiles(results: dict[str, dict[str, Any]], out: Path) -> None:
    """The profiled step of every side, as a table under the speed table."""
    print(f"\none profiled step per side (left out of the timings above; {out}):\n")
    print("| side | step s | GPU syncs | aten ops | GPU busy | top ops (self ms) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for side, result in results.items():
        p = result.get("profile")
        if p is None:
            continue
        busy = "–" if p["gpu_busy"] is None else f"{p['gpu_busy']:.0%}"
        syncs = "–" if p["gpu_syncs"] is None else str(p["gpu_syncs"])
        top = ", ".join(f"{name} {ms:,.1f}" for name, ms in p["top_ops"][:3])
        print(f"| {side} | {p['step_s']:.3f} | {syncs} | {p['ops']:,} | {busy} | {top} |")
