"""Evaluation reports: the summary dict, the text printed by ``spikems eval``, Markdown tables and PNG plots.

Report layout (``build_report``):

- ``windows``: one row per window length with the spiking network's metrics
  (``event_pixel_iou_mean``/``_std``, ``per_event_iou_*``, ``detection_rate_*``),
  the energy totals of its scored windows (``synaptic_ops``, ``ann_macs``,
  ``snn_energy_pj``, ``ann_energy_pj``, ``energy_ratio``), ``filtered`` (the
  Kalman-filtered spiking network) and ``ann2d`` (when a baseline was given).
- ``sequences``: the same metrics per recording and window length.
- ``energy``: the per-layer operation table (SpikeMS Table III layout) at the
  training window, per recording and in total.
- ``incremental``: what the Kalman-filtered short windows reach against the raw
  training window.

Energy ratios are pooled: total ANN energy over total SNN energy of the scored
windows, never a mean of per-window ratios. The ANN runs one dense pass per window.
"""

import logging
from pathlib import Path

import numpy as np

from spikems_ros.evaluation.runner import summarize
from spikems_ros.snn.energy import LayerOperations, operations_report, operations_table

LOG = logging.getLogger(__name__)

METHODS = (("snn", "SNN"), ("ann2d", "ANN-2D"))


def _energy(scores: list, layer_names: tuple):
    """Sum the operations of the scored windows per layer and price them."""
    layers = []
    for index, name in enumerate(layer_names):
        layers.append(
            LayerOperations(
                name=name,
                input_spikes=int(sum(int(score["input_spikes_per_layer"][index]) for score in scores)),
                output_spikes=int(sum(int(score["output_spikes_per_layer"][index]) for score in scores)),
                synaptic_ops=int(sum(int(score["synaptic_ops_per_layer"][index]) for score in scores)),
                ann_macs=int(sum(int(score["ann_macs_per_layer"][index]) for score in scores)),
            )
        )
    return operations_report(layers)


def _energy_summary(report) -> dict:
    return {
        "synaptic_ops": report.synaptic_ops,
        "ann_macs": report.ann_macs,
        "snn_energy_pj": report.snn_energy_pj,
        "ann_energy_pj": report.ann_energy_pj,
        "energy_ratio": report.energy_ratio,
    }


def _method_summaries(scores: list) -> dict:
    row = summarize(scores, "snn")
    row["filtered"] = summarize(scores, "snn_filtered")
    if any("ann2d" in score for score in scores):
        row["ann2d"] = summarize(scores, "ann2d")
    return row


def build_report(results: list, *, windows_ms: list, layer_names: tuple, trained_window_ms: int,
                 short_window_ms: int, header: dict) -> dict:
    """Build the report dict from (recording name, window_ms, window scores) triples."""
    window_rows, sequence_rows = [], []
    for window_ms in windows_ms:
        pooled = [score for _, length, scores in results if length == window_ms for score in scores]
        row = {"window_ms": window_ms, **_method_summaries(pooled)}
        if pooled:
            row.update(_energy_summary(_energy(pooled, layer_names)))
        window_rows.append(row)
    for name, window_ms, scores in results:
        sequence_rows.append({"sequence": name, "window_ms": window_ms, **_method_summaries(scores)})

    # Table III at the training window, or the nearest evaluated one.
    energy_window_ms = min(windows_ms, key=lambda length: (abs(length - trained_window_ms), length))
    energy = {"window_ms": energy_window_ms, "sequences": [], "layers": []}
    at_window = [(name, scores) for name, length, scores in results if length == energy_window_ms and scores]
    for name, scores in at_window:
        energy["sequences"].append({"sequence": name, "windows": len(scores), **_energy_summary(_energy(scores, layer_names))})
    if at_window:
        energy["layers"] = operations_table(_energy([s for _, scores in at_window for s in scores], layer_names))

    return {
        **header,
        "windows": window_rows,
        "sequences": sequence_rows,
        "energy": energy,
        "incremental": incremental_summary(window_rows, trained_window_ms, short_window_ms),
    }


def incremental_summary(window_rows: list, trained_window_ms: int, short_window_ms: int) -> dict:
    """Compare the filtered short window with the raw training window, by per-event IoU.

    Per-event IoU is used because both predictions classify the same input
    events. Event-pixel IoU would also count the pixels without events, which the
    raw output spreads onto and the filtered output never marks.
    """
    by_window = {row["window_ms"]: row for row in window_rows}
    summary = {
        "metric": "per_event_iou",
        "trained_window_ms": trained_window_ms,
        "short_window_ms": short_window_ms,
        "latency_saved_ms": trained_window_ms - short_window_ms,
    }
    if trained_window_ms not in by_window or short_window_ms not in by_window:
        LOG.info("incremental comparison needs --windows to include %d and %d ms", short_window_ms, trained_window_ms)
        return {**summary, "trained_iou": None, "short_raw_iou": None, "short_filtered_iou": None,
                "filtered_fraction": None, "raw_fraction": None}
    trained = by_window[trained_window_ms]["per_event_iou_mean"]
    short_raw = by_window[short_window_ms]["per_event_iou_mean"]
    short_filtered = by_window[short_window_ms]["filtered"]["per_event_iou_mean"]
    valid = np.isfinite(trained) and trained > 0
    return {
        **summary,
        "trained_iou": trained,
        "short_raw_iou": short_raw,
        "short_filtered_iou": short_filtered,
        "filtered_fraction": short_filtered / trained if valid else float("nan"),
        "raw_fraction": short_raw / trained if valid else float("nan"),
    }


def _cell(summary: dict | None, key: str, digits: int = 3) -> str:
    if summary is None or summary.get(f"{key}_mean") is None:
        return "–"
    mean, std = summary[f"{key}_mean"], summary[f"{key}_std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_text(report: dict) -> str:
    """Return the plain-text table ``spikems eval`` prints, one line per window length."""
    has_ann = any("ann2d" in row for row in report["windows"])
    lines = [
        f"weights: {report['weights']}   data: {report['source']}   output delay: {report['output_delay_bins']} bins",
        "window_ms  windows  event-pixel IoU   per-event IoU     detection rate    filtered per-event IoU"
        + ("  ANN-2D event-pixel IoU" if has_ann else "") + "  ANN/SNN energy",
    ]
    for row in report["windows"]:
        ratio = row.get("energy_ratio")
        line = (
            f"{row['window_ms']:>9}  {row['windows']:>7}  {_cell(row, 'event_pixel_iou')}   "
            f"{_cell(row, 'per_event_iou')}   {_cell(row, 'detection_rate')}   "
            f"{_cell(row['filtered'], 'per_event_iou')}        "
        )
        if has_ann:
            line += f"{_cell(row.get('ann2d'), 'event_pixel_iou')}         "
        line += f"{ratio:.1f}x" if ratio is not None else "–"
        lines.append(line)
    incremental = report["incremental"]
    if incremental.get("filtered_fraction") is not None:
        lines.append(
            f"filtered {incremental['short_window_ms']} ms windows reach {incremental['filtered_fraction']:.0%} "
            f"of the {incremental['trained_window_ms']} ms per-event IoU (raw: {incremental['raw_fraction']:.0%}), "
            f"{incremental['latency_saved_ms']} ms sooner"
        )
    return "\n".join(lines)


def _table_one(report: dict, key: str) -> list:
    """Rows: recordings and 'all'; columns: SNN and ANN-2D per window length (SpikeMS Table I layout)."""
    windows = [row["window_ms"] for row in report["windows"]]
    methods = [(method, label) for method, label in METHODS
               if method == "snn" or any(method in row for row in report["windows"])]
    header = "| sequence | " + " | ".join(f"{label} {window} ms" for window in windows for _, label in methods) + " |"
    lines = [header, "|---" * (1 + len(windows) * len(methods)) + "|"]
    names = list(dict.fromkeys(row["sequence"] for row in report["sequences"]))
    by_key = {(row["sequence"], row["window_ms"]): row for row in report["sequences"]}
    rows = [(name, lambda window, name=name: by_key.get((name, window))) for name in names]
    by_window = {row["window_ms"]: row for row in report["windows"]}
    rows.append(("all", lambda window: by_window.get(window)))
    for name, lookup in rows:
        cells = []
        for window in windows:
            row = lookup(window)
            for method, _ in methods:
                summary = row if method == "snn" else (row or {}).get(method)
                cells.append(_cell(summary, key))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def format_markdown(report: dict, command: str) -> str:
    """Return the report as Markdown: Table I per metric, incremental prediction and Table III."""
    lines = [
        "# Evaluation results",
        "",
        f"Command: `{command}`",
        "",
        f"Weights: `{report['weights']}`" + (f", baseline `{report['baseline']}`" if report.get("baseline") else "")
        + f". Data: {report['source']}. Output delay {report['output_delay_bins']} bins, "
        f"first {report['warmup_ms']:g} ms of each recording not scored. Cells are mean ± standard deviation "
        "over windows.",
        "",
    ]
    for key, title in (("event_pixel_iou", "Event-pixel IoU"), ("per_event_iou", "Per-event IoU"),
                       ("detection_rate", "Detection rate")):
        lines += [f"## {title}", "", *_table_one(report, key), ""]

    incremental = report["incremental"]
    lines += [
        "## Incremental prediction",
        "",
        f"Network trained on {incremental['trained_window_ms']} ms windows. Filtered: a constant-velocity "
        "Kalman filter over the box of each object found in the window's output (centre and size); the "
        "events inside the filtered boxes are foreground. Per-event IoU:",
        "",
        "| window (ms) | raw | filtered |",
        "|---|---|---|",
    ]
    for row in report["windows"]:
        lines.append(f"| {row['window_ms']} | {_cell(row, 'per_event_iou')} | {_cell(row['filtered'], 'per_event_iou')} |")
    if incremental.get("filtered_fraction") is not None:
        lines += [
            "",
            f"Filtered {incremental['short_window_ms']} ms windows reach {incremental['filtered_fraction']:.0%} of the "
            f"raw {incremental['trained_window_ms']} ms per-event IoU (raw {incremental['short_window_ms']} ms: "
            f"{incremental['raw_fraction']:.0%}) and answer {incremental['latency_saved_ms']} ms sooner.",
        ]
    lines += ["", "![IoU against window length](iou_vs_window.png)", ""]

    energy = report["energy"]
    lines += [
        f"## Energy ({energy['window_ms']} ms windows)",
        "",
        "Synaptic operations (each input spike times its fan-out) at 0.9 pJ per accumulate against the "
        "multiply-accumulates of one dense ANN pass per window at 4.6 pJ per MAC.",
        "",
        "| sequence | windows | synaptic ops | SNN energy (µJ) | ANN MACs | ANN energy (µJ) | ANN/SNN |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in energy["sequences"]:
        lines.append(
            f"| {row['sequence']} | {row['windows']} | {row['synaptic_ops']:,} | {row['snn_energy_pj'] / 1e6:.2f} | "
            f"{row['ann_macs']:,} | {row['ann_energy_pj'] / 1e6:.2f} | {_ratio(row['energy_ratio'])} |"
        )
    lines += ["", "| layer | input spikes | synaptic ops | ANN MACs | SNN energy (µJ) | ANN energy (µJ) | ANN/SNN |",
              "|---|---|---|---|---|---|---|"]
    for row in energy["layers"]:
        lines.append(
            f"| {row['layer']} | {row['input_spikes']:,} | {row['synaptic_ops']:,} | {row['ann_macs']:,} | "
            f"{row['snn_energy_pj'] / 1e6:.2f} | {row['ann_energy_pj'] / 1e6:.2f} | {_ratio(row['energy_ratio'])} |"
        )
    lines += ["", "![Energy per layer](energy_per_layer.png)", ""]
    return "\n".join(lines)


def _ratio(value) -> str:
    return f"{value:.1f}x" if value is not None else "–"


def plot_iou_vs_window(report: dict, path: Path) -> None:
    """Plot per-event and event-pixel IoU against window length: raw, filtered and ANN-2D (as SpikeMS Figure 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = [row["window_ms"] for row in report["windows"]]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for axis, key, title in ((axes[0], "per_event_iou", "per-event IoU"), (axes[1], "event_pixel_iou", "event-pixel IoU")):
        series = [("SNN", [row for row in report["windows"]], "o-"),
                  ("SNN + Kalman filter", [row["filtered"] for row in report["windows"]], "s--")]
        if all("ann2d" in row for row in report["windows"]):
            series.append(("ANN-2D", [row["ann2d"] for row in report["windows"]], "^:"))
        for label, rows, style in series:
            means = np.array([np.nan if row[f"{key}_mean"] is None else row[f"{key}_mean"] for row in rows])
            stds = np.array([np.nan if row[f"{key}_std"] is None else row[f"{key}_std"] for row in rows])
            axis.plot(windows, means, style, label=label)
            axis.fill_between(windows, means - stds, means + stds, alpha=0.15)
        axis.axvline(report["incremental"]["trained_window_ms"], color="grey", linewidth=0.8)
        axis.set_xlabel("window (ms)")
        axis.set_title(title)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_energy_per_layer(report: dict, path: Path) -> None:
    """Bar chart of SNN and ANN energy per layer, logarithmic scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report["energy"]["layers"] if row["layer"] != "total"]
    positions = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar(positions - 0.2, [row["snn_energy_pj"] / 1e6 for row in rows], 0.4, label="SNN (0.9 pJ/AC)")
    axis.bar(positions + 0.2, [row["ann_energy_pj"] / 1e6 for row in rows], 0.4, label="ANN (4.6 pJ/MAC)")
    axis.set_xticks(positions, [row["layer"] for row in rows])
    axis.set_yscale("log")
    axis.set_ylabel(f"energy over all {report['energy']['window_ms']} ms windows (µJ)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(report: dict, folder, command: str) -> None:
    """Write report.json, results.md and the PNG plots into ``folder`` (created when absent)."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (folder / "results.md").write_text(format_markdown(report, command), encoding="utf-8")
    plot_iou_vs_window(report, folder / "iou_vs_window.png")
    if report["energy"]["layers"]:
        plot_energy_per_layer(report, folder / "energy_per_layer.png")
