#!/usr/bin/env python3
"""Compares the outputs of two `cartscope run` folders and exits 1 on any difference in content.

Usage: scripts/compare_runs.py DIR_A DIR_B

Proves that a change left a run's results alone (e.g. a refactoring: run the old and the new
binary on the same input and options, then compare):
- result.h5ad: every group, dataset and attribute, with dtypes, shapes and values bit for bit;
- cells.parquet, summary.csv, config.toml: byte for byte;
- summary.json: every field except the measurements that differ between any two runs
  (stage_seconds values, total_seconds, peak_rss_mib); the stage names must agree;
- report.html: byte for byte once the run's total seconds (the only timing it prints) is masked.
Needs h5py and numpy (the test venv has both).
"""
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np

problems = []


def compare_attrs(a, b, where):
    if sorted(a.attrs.keys()) != sorted(b.attrs.keys()):
        problems.append(f"{where}: attributes {sorted(a.attrs.keys())} vs {sorted(b.attrs.keys())}")
        return
    for k in a.attrs.keys():
        x, y = a.attrs[k], b.attrs[k]
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            problems.append(f"{where}: attribute {k}: {x!r} vs {y!r}")


def compare_h5(a, b, where="/"):
    compare_attrs(a, b, where)
    if isinstance(a, h5py.Dataset) or isinstance(b, h5py.Dataset):
        if not (isinstance(a, h5py.Dataset) and isinstance(b, h5py.Dataset)):
            problems.append(f"{where}: dataset vs group")
            return
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
            return
        x, y = np.asarray(a[()]), np.asarray(b[()])
        same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else np.array_equal(x, y)
        if not same:
            problems.append(f"{where}: values differ")
        return
    if sorted(a.keys()) != sorted(b.keys()):
        problems.append(f"{where}: members {sorted(a.keys())} vs {sorted(b.keys())}")
        return
    for k in a.keys():
        compare_h5(a[k], b[k], f"{where.rstrip('/')}/{k}")


def same_bytes(name, a, b):
    if a.exists() != b.exists():
        problems.append(f"{name}: present in only one folder")
    elif a.exists() and a.read_bytes() != b.read_bytes():
        problems.append(f"{name}: bytes differ")


def summary_content(path):
    s = json.loads(path.read_text())
    s["stage_names"] = [name for name, _ in s.pop("stage_seconds")]
    for k in ("total_seconds", "peak_rss_mib"):
        s.pop(k)
    return s


def report_content(path):
    return re.sub(r"total [0-9.]+ s", "total _ s", path.read_text())


def main():
    da, db = Path(sys.argv[1]), Path(sys.argv[2])
    with h5py.File(da / "result.h5ad", "r") as a, h5py.File(db / "result.h5ad", "r") as b:
        compare_h5(a, b)
    for name in ("cells.parquet", "summary.csv", "config.toml"):
        same_bytes(name, da / name, db / name)
    if summary_content(da / "summary.json") != summary_content(db / "summary.json"):
        problems.append("summary.json: content differs")
    ra, rb = da / "report.html", db / "report.html"
    if ra.exists() != rb.exists() or (ra.exists() and report_content(ra) != report_content(rb)):
        problems.append("report.html: content differs")
    for p in problems:
        print(p)
    print("identical" if not problems else f"{len(problems)} differences")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
