"""Plots docs/scaling.csv (seconds per stage and peak RSS of `cartscope run` by number of cells)
into docs/scaling.png.

The CSV has one row per run: cells in, cells after QC, input passes, seconds per stage
(read+qc ... write), total seconds and peak RSS (MiB), from each run's summary.json.

Usage: python benches/scaling_plot.py [docs/scaling.csv] [docs/scaling.png]
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STAGES = ["read+qc", "hvg", "cart", "pca", "neighbors", "leiden", "umap", "markers", "other"]


def main() -> None:
    src = sys.argv[1] if len(sys.argv) > 1 else "docs/scaling.csv"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/scaling.png"
    rows = list(csv.DictReader(open(src)))
    cells = [int(r["cells_after_qc"]) for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        ax_t.plot(cells, [max(float(r[stage]), 1e-2) for r in rows], "o-", label=stage,
                  linewidth=1, markersize=3)
    ax_t.plot(cells, [float(r["total"]) for r in rows], "ks-", label="total", linewidth=2)
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    ax_t.set_xlabel("cells after QC")
    ax_t.set_ylabel("seconds")
    ax_t.set_title("cartscope run --backend cpu, 2 cores, per stage")
    ax_t.legend(fontsize=7, ncol=2)
    ax_m.plot(cells, [float(r["peak_rss_mib"]) / 1024 for r in rows], "o-")
    ax_m.set_xscale("log")
    ax_m.set_xlabel("cells after QC")
    ax_m.set_ylabel("peak RSS (GiB)")
    ax_m.axhline(8, color="grey", linestyle="--", linewidth=0.8)
    ax_m.set_title("peak memory (24 GiB machine)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    main()
