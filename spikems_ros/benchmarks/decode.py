"""EVT 3.0 decoding throughput, ours side by side with expelliarmus (``spikems bench decode``).

Both decoders read the same Prophesee ``.raw`` file from disk into memory and return
every event. The figure is decoded events per second of wall time, the median of
``repeats`` runs. expelliarmus (PyPI, C decoder behind a Python API) is timed only
when it is installed.
"""

import logging
import time
from pathlib import Path

import numpy as np

from spikems_ros.benchmarks.system import machine_summary
from spikems_ros.events.raw import read_prophesee_raw

LOG = logging.getLogger(__name__)


def _median_run(read, repeats: int) -> tuple[float, int]:
    seconds, count = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        count = read()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), count


def run_decode_bench(path: Path, repeats: int = 5) -> dict:
    """Time both decoders on ``path``; return events, median seconds and Mev/s per decoder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EVT 3.0 file {path} not found")
    if repeats < 1:
        raise ValueError(f"repeats = {repeats!r} is invalid: expected an integer >= 1")

    rows = []
    seconds, count = _median_run(lambda: int(read_prophesee_raw(path).events.shape[0]), repeats)
    rows.append({"decoder": "spikems_ros", "events": count, "median_s": seconds, "mev_per_s": count / seconds / 1e6})

    try:
        import expelliarmus
        from expelliarmus import Wizard
    except ImportError:
        LOG.warning("expelliarmus is not installed: its row is skipped (pip install -r requirements/bench.txt)")
    else:
        wizard = Wizard(encoding="evt3", fpath=str(path))
        seconds, count = _median_run(lambda: int(wizard.read().shape[0]), repeats)
        version = getattr(expelliarmus, "__version__", "")
        rows.append({"decoder": f"expelliarmus {version}".strip(), "events": count, "median_s": seconds,
                     "mev_per_s": count / seconds / 1e6})

    return {"machine": machine_summary(), "file": str(path), "bytes": path.stat().st_size, "repeats": repeats,
            "rows": rows}


def format_decode_report(report: dict) -> str:
    """Format the decode report as an aligned table."""
    machine = report["machine"]
    lines = [
        f"machine: {machine['cpu_model']}, {machine['logical_cores']} logical cores, "
        f"load {machine['load_average_1_5_15_min']}, {machine['date_utc']} UTC",
        f"file: {report['file']} ({report['bytes'] / 1e6:.1f} MB), median of {report['repeats']} runs",
        f"  {'decoder':<22} {'events':>10} {'median s':>9} {'Mev/s':>8}",
    ]
    for row in report["rows"]:
        lines.append(f"  {row['decoder']:<22} {row['events']:>10} {row['median_s']:>9.3f} {row['mev_per_s']:>8.2f}")
    return "\n".join(lines)
