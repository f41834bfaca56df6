"""Reading speed of `cartscope.read` against scanpy's readers on the same files.

For each file: `.h5ad` against `scanpy.read_h5ad`, 10x `.h5` against `scanpy.read_10x_h5`, a
10x MTX directory against `scanpy.read_10x_mtx`; REPEATS alternating runs, medians and the
median of the per-run ratios. Both results are checked to hold the same matrix.

Usage: python benches/compare_readers.py FILE [FILE ...] [--repeats N]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import scanpy as sc  # noqa: E402

import cartscope as cs  # noqa: E402


def scanpy_reader(path: str):
    if os.path.isdir(path):
        return lambda: sc.read_10x_mtx(path)
    if path.endswith(".h5ad"):
        return lambda: sc.read_h5ad(path)
    return lambda: sc.read_10x_h5(path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"{'file':<40} {'scanpy s':>9} {'cartscope s':>12} {'ratio':>7}")
    for path in args.files:
        ref = scanpy_reader(path)
        ts, tc = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            a = ref()
            ts.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = cs.read(path)
            tc.append(time.perf_counter() - t0)
            xa = a.X.tocsr().astype(np.float32)
            xa.sort_indices()
            assert a.shape == b.shape and (xa != b.X).nnz == 0, "the readers disagree"
            del a, b, xa
            gc.collect()
        ratio = statistics.median(x / y for x, y in zip(ts, tc, strict=True))
        name = os.path.basename(path.rstrip("/"))
        print(f"{name:<40} {statistics.median(ts):>9.3f} {statistics.median(tc):>12.3f} {ratio:>6.1f}x")


if __name__ == "__main__":
    main()
