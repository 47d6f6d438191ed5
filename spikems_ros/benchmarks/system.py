"""Machine description for benchmark reports, and the peak memory of a run."""

import datetime
import os
import platform
from pathlib import Path

STATUS_PATH = Path("/proc/self/status")
CLEAR_REFS_PATH = Path("/proc/self/clear_refs")


def usable_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_summary() -> dict:
    """Return the CPU model, the logical core count, the load averages and the date (UTC)."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "load_average_1_5_15_min": [round(value, 2) for value in load],
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
    }


def _status_kib(field: str) -> int | None:
    if not STATUS_PATH.is_file():
        return None
    for line in STATUS_PATH.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


class PeakMemory:
    """Peak resident memory added during a ``with`` block, in MiB (Linux only, else None).

    Linux resets the process's peak resident size (VmHWM) when "5" is written to
    /proc/self/clear_refs; the figure is that peak minus the resident size at entry.
    """

    def __enter__(self):
        self.added_mib = None
        self._start_kib = _status_kib("VmRSS")
        try:
            CLEAR_REFS_PATH.write_text("5")
            self._reset = True
        except OSError:
            self._reset = False
        return self

    def __exit__(self, *exc_info):
        peak_kib = _status_kib("VmHWM")
        if self._reset and peak_kib is not None and self._start_kib is not None:
            self.added_mib = max(peak_kib - self._start_kib, 0) / 1024
        return False
