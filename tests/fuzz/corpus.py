#!/usr/bin/env python3
"""Damaged-input campaign: a seeded corpus of broken count files, each read by `cartscope`.

Every case is made from one of a set of real-shaped base files (built here, deterministically,
plus an optional real published file) by one mutation, and is fully determined by
(seed, case number): `--only N --keep DIR` rebuilds case N for a bug report.

Base files: `.h5ad` as anndata writes them (CSR gzip with categorical, nullable and string obs
columns; CSC LZF; dense gzip-chunked; dense contiguous), 10x `.h5` v3 (gzip) and v2, 10x MTX v3
(gzipped) and v2 (plain text).

Mutations, for the HDF5 files (their layout read with h5py: where each dataset's chunks or
contiguous data lie; the rest of the file is metadata - superblock, object headers, B-trees,
heaps):
  flip_meta      1-8 random bytes changed in the metadata
  flip_data      1-8 random bytes changed inside data chunks (compressed streams included)
  truncate       the file cut at a structural boundary (a chunk's start or end, the end of
                 the superblock, a metadata run's start or end), or one byte either side
  zero_meta      a run of 8-512 metadata bytes zeroed
  zero_chunk     one data chunk zeroed
  swap_chunks    two data chunks' bytes exchanged
  inflate        a shape or extent rewritten through HDF5 itself: the sparse `shape`
                 attribute, 10x `/matrix/shape`, the last `indptr` entry, categorical codes,
                 or X replaced by a chunked dataset whose declared size is enormous and whose
                 chunks were never written
and for MTX: flips in the text or in the gzip stream, truncation at every line boundary kind
(header, size line, entries, mid-line) and of the gzip stream, inflated size-line fields,
replaced numbers, deleted or duplicated lines.

Each case runs `cartscope info` (and every 25th case also `cartscope run --backend cpu`), with
a wall-clock bound and an address-space limit, and is classified:
  ok            exit 0
  error         exit 2, one line `error: ...` naming the file
  caught_crash  exit 2, one line: libhdf5 crashed and the crash handler reported it
  caught_hang   exit 2, one line: libhdf5 made no progress and the stall watch ended it
                (the campaign sets CARTSCOPE_HDF5_STALL_SECONDS to a quarter of the bound)
  signal        killed by a signal (no message)          - a failure
  hang          still running after the bound (killed)    - a failure
  bad_exit      any other exit code                        - a failure
  bad_message   exit 2 but not one line naming the file    - a failure
  memory        peak RSS above the bound                   - a failure

The peak-RSS bound of a case is the intact base file's peak RSS plus 64 MiB plus the case
file's size times 1,032 (deflate's largest expansion ratio): a reader that sizes buffers from
declared shapes rather than from what the file holds exceeds it.

Usage:
  corpus.py --bin target/release/cartscope --work /tmp/fuzz --seed 1 --count 10000 \
      [--jobs 2] [--timeout 20] [--real wu2020.h5ad] [--json results.json]
"""
import argparse
import concurrent.futures
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

# The fixtures' text writer (plain or gzip with a fixed mtime, so bases are byte-identical).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from make_fixtures import write_text  # noqa: E402

warnings.filterwarnings("ignore")

HDF5_KINDS = ["flip_meta", "flip_data", "truncate", "zero_meta", "zero_chunk", "swap_chunks", "inflate"]
MTX_KINDS = ["flip_text", "flip_gz", "truncate_line", "truncate_gz", "inflate_header", "replace_number",
             "delete_line", "duplicate_line"]
FAILURES = ["signal", "hang", "bad_exit", "bad_message", "memory"]
DEFLATE_RATIO = 1032
AS_LIMIT = 8 << 30


# ---------------------------------------------------------------------------------------------
# Base files


def _counts(rng, n_obs, n_vars, density):
    m = rng.negative_binomial(2, 0.4, size=(n_obs, n_vars)) * (rng.random((n_obs, n_vars)) < density)
    m[:, 0] += 1  # no empty cell
    return m.astype(np.int64)


def _genes(n):
    named = ["CD3E", "CD3D", "CD4", "CD8A", "CD8B", "MT-CO1", "MT-ND1", "TCF7", "PDCD1", "HAVCR2",
             "GZMB", "MKI67", "SELL", "IL7R", "TOX", "LAG3", "CCR7", "FOXP3", "CAR-FMC63-28Z"]
    return named + [f"GENE{i:05d}" for i in range(n - len(named))]


def _obs(rng, n):
    return pd.DataFrame({
        "sample": pd.Categorical(rng.choice(["infusion", "day14", "day90"], n)),
        "donor": pd.Categorical([None if i % 7 == 0 else f"d{i % 3}" for i in range(n)]),
        "batch_label": [f"b{i % 4}" for i in range(n)],
        "n_counts_prev": rng.random(n),
        "score32": rng.random(n).astype(np.float32),
        "nullable_int": pd.array([None if i % 5 == 0 else i for i in range(n)], dtype="Int64"),
        "nullable_bool": pd.array([None if i % 6 == 0 else bool(i % 2) for i in range(n)], dtype="boolean"),
        "is_t": rng.random(n) < 0.7,
    }, index=[f"AAAC{i:06d}-1" for i in range(n)])


def _var(names):
    return pd.DataFrame({
        "gene_ids": [f"ENSG{i:011d}" for i in range(len(names))],
        "feature_types": pd.Categorical(["Gene Expression"] * len(names)),
    }, index=names)


def _mtx_lines(m, n_features):
    coo = sp.coo_matrix(m.T)  # features x cells
    order = np.lexsort((coo.row, coo.col))
    entries = [f"{coo.row[k] + 1} {coo.col[k] + 1} {coo.data[k]}" for k in order]
    return ["%%MatrixMarket matrix coordinate integer general", "%metadata_json: {}",
            f"{n_features} {m.shape[0]} {len(entries)}"] + entries


def _tenx_v3(path, m, names, bc):
    csc = sp.csc_matrix(m.T.astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("matrix")
        g.create_dataset("barcodes", data=np.array(bc, dtype="S"), compression="gzip")
        g.create_dataset("data", data=csc.data, compression="gzip", chunks=(2048,))
        g.create_dataset("indices", data=csc.indices.astype(np.int64), compression="gzip", chunks=(2048,))
        g.create_dataset("indptr", data=csc.indptr.astype(np.int64), compression="gzip")
        g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
        fg = g.create_group("features")
        fg.create_dataset("_all_tag_keys", data=np.array([b"genome"], dtype="S"))
        fg.create_dataset("feature_type", data=np.array(["Gene Expression"] * len(names), dtype="S"))
        fg.create_dataset("genome", data=np.array(["GRCh38"] * len(names), dtype="S"))
        fg.create_dataset("id", data=np.array([f"ENSG{i:011d}" for i in range(len(names))], dtype="S"))
        fg.create_dataset("name", data=np.array(names, dtype="S"))


def _tenx_v2(path, m, names, bc):
    csc = sp.csc_matrix(m.T.astype(np.int32))
    with h5py.File(path, "w") as f:
        g = f.create_group("GRCh38")
        g.create_dataset("barcodes", data=np.array(bc, dtype="S"))
        g.create_dataset("data", data=csc.data)
        g.create_dataset("indices", data=csc.indices)
        g.create_dataset("indptr", data=csc.indptr)
        g.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32))
        g.create_dataset("genes", data=np.array([f"ENSG{i:011d}" for i in range(len(names))], dtype="S"))
        g.create_dataset("gene_names", data=np.array(names, dtype="S"))


def make_bases(base_dir, real=None):
    """Writes the base files (same bytes for the same library versions) and returns their paths."""
    base_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261206)
    n, g = 500, 300
    names = _genes(g)
    m = _counts(rng, n, g, 0.08)
    obs, var = _obs(rng, n), _var(names)
    bases = {}

    p = base_dir / "csr_gzip.h5ad"
    ad.AnnData(X=sp.csr_matrix(m.astype(np.float32)), obs=obs, var=var).write_h5ad(p, compression="gzip")
    bases["csr_gzip.h5ad"] = p

    p = base_dir / "csc_lzf.h5ad"
    x = sp.csc_matrix(m[:300, :200].astype(np.int32))
    ad.AnnData(X=x, obs=obs.iloc[:300], var=var.iloc[:200]).write_h5ad(p, compression="lzf")
    bases["csc_lzf.h5ad"] = p

    p = base_dir / "dense_gzip.h5ad"
    ad.AnnData(X=m[:200, :150].astype(np.float32), obs=obs.iloc[:200], var=var.iloc[:150]).write_h5ad(
        p, compression="gzip")
    bases["dense_gzip.h5ad"] = p

    p = base_dir / "dense_plain.h5ad"
    ad.AnnData(X=m[:120, :80].astype(np.float64), obs=obs.iloc[:120, :3], var=var.iloc[:80]).write_h5ad(p)
    bases["dense_plain.h5ad"] = p

    bc = list(obs.index)
    p = base_dir / "tenx_v3.h5"
    _tenx_v3(p, m, names, bc)
    bases["tenx_v3.h5"] = p

    p = base_dir / "tenx_v2.h5"
    _tenx_v2(p, m[:200, :100], names[:100], bc[:200])
    bases["tenx_v2.h5"] = p

    def mtx_dir(name, n_cells, n_genes, v3):
        # v3: gzipped, features.tsv.gz with a type column; v2: plain text, genes.tsv.
        d = base_dir / name
        d.mkdir(exist_ok=True)
        gz = ".gz" if v3 else ""
        features = [f"ENSG{i:011d}\t{names[i]}" + ("\tGene Expression" if v3 else "") for i in range(n_genes)]
        write_text(d / f"matrix.mtx{gz}", _mtx_lines(m[:n_cells, :n_genes], n_genes), v3)
        write_text(d / (f"features.tsv{gz}" if v3 else "genes.tsv"), features, v3)
        write_text(d / f"barcodes.tsv{gz}", bc[:n_cells], v3)
        bases[name] = d

    mtx_dir("mtx_v3_gz", 200, 120, True)
    mtx_dir("mtx_v2", 150, 90, False)

    if real is not None:
        p = base_dir / ("real_" + Path(real).name)
        shutil.copyfile(real, p)
        bases[p.name] = p
    return bases


# ---------------------------------------------------------------------------------------------
# Layout of an HDF5 file: where the data lie; everything else is metadata.


def hdf5_layout(path):
    chunks = []
    datasets = []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        datasets.append(name)
        dsid = obj.id
        try:
            n = dsid.get_num_chunks()
            for i in range(n):
                info = dsid.get_chunk_info(i)
                if info.byte_offset is not None and info.size > 0:
                    chunks.append((int(info.byte_offset), int(info.size)))
            return
        except (TypeError, ValueError, RuntimeError):
            pass
        off = dsid.get_offset()
        size = dsid.get_storage_size()
        if off is not None and size > 0:
            chunks.append((int(off), int(size)))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    size = os.path.getsize(path)
    chunks.sort()
    meta, pos = [], 0
    for off, n in chunks:
        if off > pos:
            meta.append((pos, off - pos))
        pos = max(pos, off + n)
    if pos < size:
        meta.append((pos, size - pos))
    return {"size": size, "chunks": chunks, "meta": meta, "datasets": datasets}


def _pick_bytes(rng, regions, k):
    total = sum(n for _, n in regions)
    if total == 0:
        return []
    out = []
    for _ in range(k):
        r = int(rng.integers(total))
        for off, n in regions:
            if r < n:
                out.append(off + r)
                break
            r -= n
    return out


def _flip(data, positions, rng):
    for p in positions:
        data[p] ^= int(rng.integers(1, 256))


def mutate_hdf5(rng, kind, src, dst, layout, base_name):
    """Writes the mutated copy of `src` to `dst`; returns a short description."""
    data = bytearray(src.read_bytes())
    chunks, meta = layout["chunks"], layout["meta"]
    if kind == "flip_meta":
        pos = _pick_bytes(rng, meta, int(rng.integers(1, 9)))
        _flip(data, pos, rng)
        detail = f"bytes {pos}"
    elif kind == "flip_data":
        pos = _pick_bytes(rng, chunks, int(rng.integers(1, 9)))
        _flip(data, pos, rng)
        detail = f"bytes {pos}"
    elif kind == "truncate":
        bounds = sorted({0, 8, 48, 96, len(data) - 1}
                        | {o for o, _ in chunks} | {o + n for o, n in chunks}
                        | {o for o, _ in meta} | {o + n for o, n in meta})
        at = bounds[int(rng.integers(len(bounds)))] + int(rng.integers(-1, 2))
        at = min(max(at, 0), len(data) - 1)
        del data[at:]
        detail = f"at {at} of {layout['size']}"
    elif kind == "zero_meta":
        (start,) = _pick_bytes(rng, meta, 1)
        n = int(rng.integers(8, 513))
        data[start:start + n] = bytes(len(data[start:start + n]))
        detail = f"{n} bytes at {start}"
    elif kind == "zero_chunk":
        off, n = chunks[int(rng.integers(len(chunks)))]
        data[off:off + n] = bytes(n)
        detail = f"chunk at {off} ({n} bytes)"
    elif kind == "swap_chunks":
        i, j = rng.choice(len(chunks), 2, replace=len(chunks) < 2)
        (a, na), (b, nb) = chunks[i], chunks[j]
        n = min(na, nb)
        if abs(a - b) >= n:
            data[a:a + n], data[b:b + n] = data[b:b + n], data[a:a + n]
        detail = f"chunks at {a} and {b} ({n} bytes)"
    elif kind == "inflate":
        dst.write_bytes(data)
        return inflate(rng, dst, base_name)
    else:
        raise ValueError(kind)
    dst.write_bytes(data)
    return detail


def _rewrite(group, name, values, dtype=None):
    arr = np.asarray(values, dtype=dtype)
    if name in group:
        del group[name]
    group.create_dataset(name, data=arr)


def inflate(rng, path, base_name):
    huge = [2 ** 31 - 1, 2 ** 40, 2 ** 62, -1, 0]
    with h5py.File(path, "r+") as f:
        if base_name.startswith("tenx_v3") or base_name.startswith("tenx_v2"):
            g = f["matrix"] if "matrix" in f else f["GRCh38"]
            choice = int(rng.integers(4))
            if choice == 0:
                shape = g["shape"][()].astype(np.int64)
                shape[int(rng.integers(2))] = huge[int(rng.integers(len(huge)))]
                _rewrite(g, "shape", shape, np.int64)
                return f"shape {shape.tolist()}"
            if choice == 1:
                ip = g["indptr"][()].astype(np.int64)
                ip[-1] = huge[int(rng.integers(len(huge)))]
                _rewrite(g, "indptr", ip)
                return f"indptr[-1] = {ip[-1]}"
            if choice == 2:
                n = int(g["shape"][1])
                _rewrite(g, "indptr", np.zeros(int(rng.integers(0, 2 * n + 3)), dtype=np.int64))
                return "indptr length changed"
            _inflate_dataset(g, "data", rng)
            return "data: enormous chunked dataset, chunks never written"
        x = f["X"]
        choice = int(rng.integers(5))
        if isinstance(x, h5py.Group) and choice == 0:
            shape = np.array(x.attrs["shape"], dtype=np.int64)
            shape[int(rng.integers(2))] = huge[int(rng.integers(len(huge)))]
            x.attrs["shape"] = shape
            return f"X shape attribute {shape.tolist()}"
        if isinstance(x, h5py.Group) and choice == 1:
            ip = x["indptr"][()].astype(np.int64)
            ip[int(rng.integers(len(ip)))] = huge[int(rng.integers(len(huge)))]
            _rewrite(x, "indptr", ip)
            return "indptr entry inflated"
        if choice == 2 and "obs" in f:
            cats = [k for k in f["obs"] if isinstance(f["obs"][k], h5py.Group) and "codes" in f["obs"][k]]
            if cats:
                c = f["obs"][cats[int(rng.integers(len(cats)))]]
                codes = c["codes"][()].astype(np.int64)
                codes[int(rng.integers(len(codes)))] = huge[int(rng.integers(3))] % 2 ** 31
                _rewrite(c, "codes", codes, codes.dtype if codes.max() < 2 ** 31 else np.int64)
                return f"categorical {c.name} code out of range"
        if choice == 3 and "obs" in f and "_index" in f["obs"]:
            idx = f["obs"]["_index"]
            n = idx.shape[0]
            del f["obs"]["_index"]
            f["obs"].create_dataset("_index", shape=(n * 1000 + 7,), dtype=h5py.string_dtype(), chunks=(1024,))
            return "obs/_index: length inflated, never written"
        if isinstance(x, h5py.Group):
            _inflate_dataset(x, "data", rng)
            return "X/data: enormous chunked dataset, chunks never written"
        shape = x.shape
        del f["X"]
        big = (shape[0] * 10 ** int(rng.integers(3, 7)), shape[1])
        ds = f.create_dataset("X", shape=big, dtype=np.float32, chunks=(min(big[0], 4096), shape[1]),
                              compression="gzip")
        ds.attrs["encoding-type"] = "array"
        ds.attrs["encoding-version"] = "0.2.0"
        return f"X: dense {big}, chunks never written"


def _inflate_dataset(group, name, rng):
    old = group[name]
    n = old.shape[0]
    dtype = old.dtype
    del group[name]
    group.create_dataset(name, shape=(n * 10 ** int(rng.integers(3, 7)),), dtype=dtype, chunks=(4096,),
                         compression="gzip")


# ---------------------------------------------------------------------------------------------
# MTX mutations


def mutate_mtx(rng, kind, src, dst):
    shutil.copytree(src, dst)
    mats = [p for p in dst.iterdir() if p.name.startswith("matrix.mtx")]
    others = [p for p in dst.iterdir() if not p.name.startswith("matrix.mtx")]
    target = mats[0] if rng.random() < 0.75 or not others else others[int(rng.integers(len(others)))]
    gz = target.name.endswith(".gz")
    raw = target.read_bytes()
    text = bytearray(gzip.decompress(raw) if gz else raw)
    lines = bytes(text).split(b"\n")

    def put_text(t):
        target.write_bytes(gzip.compress(bytes(t), mtime=0) if gz else bytes(t))

    if kind == "flip_text":
        pos = [int(rng.integers(len(text))) for _ in range(int(rng.integers(1, 9)))]
        _flip(text, pos, rng)
        put_text(text)
        return f"{target.name}: text bytes {pos}"
    if kind == "flip_gz":
        data = bytearray(raw)
        pos = [int(rng.integers(len(data))) for _ in range(int(rng.integers(1, 5)))]
        _flip(data, pos, rng)
        target.write_bytes(bytes(data))
        return f"{target.name}: file bytes {pos}"
    if kind == "truncate_line":
        ends = np.cumsum([len(line) + 1 for line in lines])
        k = int(rng.integers(len(ends)))
        at = int(ends[k]) - int(rng.integers(0, 3)) if k < 4 or rng.random() < 0.5 else int(rng.integers(len(text)))
        at = max(0, min(at, len(text)))
        put_text(text[:at])
        return f"{target.name}: text cut at {at} of {len(text)}"
    if kind == "truncate_gz":
        at = int(rng.integers(len(raw)))
        target.write_bytes(raw[:at])
        return f"{target.name}: file cut at {at} of {len(raw)}"
    if kind == "inflate_header":
        target = mats[0]
        gz = target.name.endswith(".gz")
        raw = target.read_bytes()
        lines = (gzip.decompress(raw) if gz else raw).split(b"\n")
        i = next(k for k, line in enumerate(lines) if not line.startswith(b"%"))
        fields = lines[i].split()
        j = int(rng.integers(len(fields)))
        fields[j] = str([2 ** 31, 2 ** 40, 2 ** 63, 10 ** 30, -5, 0][int(rng.integers(6))]).encode()
        lines[i] = b" ".join(fields)
        put_text(b"\n".join(lines))
        return f"{target.name}: size line {lines[i].decode()}"
    if kind == "replace_number":
        cands = [k for k, line in enumerate(lines) if line and not line.startswith(b"%")]
        k = cands[int(rng.integers(len(cands)))]
        fields = lines[k].split(b" ") if b" " in lines[k] else lines[k].split(b"\t")
        j = int(rng.integers(len(fields)))
        fields[j] = [b"-1", b"0", b"99999999999", b"1e400", b"nan", b"1.5", b"", b"x"][int(rng.integers(8))]
        lines[k] = (b" " if b" " in lines[k] else b"\t").join(fields)
        put_text(b"\n".join(lines))
        return f"{target.name}: line {k} -> {lines[k][:40]!r}"
    if kind in ("delete_line", "duplicate_line"):
        k = int(rng.integers(len(lines)))
        if kind == "delete_line":
            del lines[k]
        else:
            lines.insert(k, lines[k])
        put_text(b"\n".join(lines))
        return f"{target.name}: line {k} {kind.split('_')[0]}d"
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------
# Running


def _limit():
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_one(binary, args, path, timeout):
    """Runs cartscope; returns (exit code or -signal or None for a hang, stderr, peak RSS bytes)."""
    env = dict(os.environ, RAYON_NUM_THREADS="1",
               CARTSCOPE_HDF5_STALL_SECONDS=str(max(1, int(timeout / 4))))
    start = time.monotonic()
    proc = subprocess.Popen([str(binary)] + args + [str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_limit, env=env)
    # stderr is small (one line); a child that fills the pipe is itself a finding.
    code, rss = None, 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            code = os.waitstatus_to_exitcode(status)
            rss = usage.ru_maxrss * 1024
            break
        if time.monotonic() - start > timeout:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            rss = usage.ru_maxrss * 1024
            break
        time.sleep(0.005)
    stderr = proc.stderr.read().decode("utf-8", "replace")
    proc.stderr.close()
    proc.returncode = 0  # reaped above
    return code, stderr, rss


def classify(code, stderr, path_name, rss, bound):
    if code is None:
        return "hang"
    if code < 0:
        return "signal"
    if rss > bound:
        return "memory"
    if code == 0:
        return "ok"
    if code != 2:
        return "bad_exit"
    lines = stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("error: ") or path_name not in lines[0]:
        return "bad_message"
    if "the HDF5 library crashed" in lines[0]:
        return "caught_crash"
    if "the HDF5 library made no progress" in lines[0]:
        return "caught_hang"
    return "error"


def case_plan(seed, i, base_names):
    rng = np.random.default_rng([seed, i])
    base = base_names[int(rng.integers(len(base_names)))]
    kinds = MTX_KINDS if base.startswith("mtx") else HDF5_KINDS
    return rng, base, kinds[int(rng.integers(len(kinds)))]


def build_case(seed, i, bases, layouts, case_dir):
    rng, base, kind = case_plan(seed, i, sorted(bases))
    src = bases[base]
    name = f"case{i:05d}_{base}" if src.is_dir() else f"case{i:05d}_{base}"
    dst = case_dir / name
    if src.is_dir():
        detail = mutate_mtx(rng, kind, src, dst)
    else:
        detail = mutate_hdf5(rng, kind, src, dst, layouts[base], base)
    return base, kind, detail, dst


def dir_size(p):
    return sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--run-every", type=int, default=25, help="also `cartscope run` every Nth case")
    ap.add_argument("--real", type=Path, help="a real .h5ad to add to the base files")
    ap.add_argument("--only", type=int, help="build (and run) this case only")
    ap.add_argument("--keep", action="store_true", help="keep the case files")
    ap.add_argument("--json", type=Path, help="write the counts and the failing cases here")
    a = ap.parse_args()

    bases = make_bases(a.work / "base", a.real)
    layouts = {k: hdf5_layout(p) for k, p in bases.items() if p.is_file()}
    case_dir = a.work / "cases"
    case_dir.mkdir(parents=True, exist_ok=True)
    # The intact files' own peak RSS: the baseline of each case's memory bound.
    base_rss = {}
    for name, p in bases.items():
        code, stderr, rss = run_one(a.bin, ["info"], p, a.timeout * 3)
        if code != 0:
            sys.exit(f"base file {name} is not read cleanly: {code} {stderr}")
        base_rss[name] = rss

    ids = [a.only] if a.only is not None else list(range(a.start, a.start + a.count))

    def work(i):
        base, kind, detail, path = build_case(a.seed, i, bases, layouts, case_dir)
        bound = base_rss[base] + (64 << 20) + dir_size(path) * DEFLATE_RATIO
        results = []
        commands = [["info"]]
        if a.run_every and i % a.run_every == 0:
            commands.append(["run", "--backend", "cpu", "-o", str(case_dir / f"out{i:05d}")])
        for args in commands:
            # A whole analysis (PCA, kNN, UMAP, Leiden) of the real base file takes about 40 s
            # in a debug build on 2 idle cores, and several times that beside other work:
            # `run` gets five times the bound of `info` (libhdf5's loops are bounded anyway,
            # by the stall watch).
            bound_s = a.timeout if args[0] == "info" else 5 * a.timeout
            code, stderr, rss = run_one(a.bin, args, path, bound_s)
            outcome = classify(code, stderr, path.name, rss, bound)
            results.append({"case": i, "base": base, "kind": kind, "detail": detail, "command": args[0],
                            "outcome": outcome, "exit": code, "rss_mib": round(rss / 2 ** 20, 1),
                            "stderr": stderr.strip()[-400:]})
        if not a.keep:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        shutil.rmtree(case_dir / f"out{i:05d}", ignore_errors=True)
        return results

    counts, by_kind, failures = {}, {}, []
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        for results in pool.map(work, ids):
            for r in results:
                counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
                key = f"{r['base']}:{r['kind']}"
                by_kind.setdefault(key, {})
                by_kind[key][r["outcome"]] = by_kind[key].get(r["outcome"], 0) + 1
                if r["outcome"] in FAILURES:
                    failures.append(r)
                    print(f"FAIL case {r['case']} ({r['base']}, {r['kind']}: {r['detail']}) "
                          f"{r['command']}: {r['outcome']} exit={r['exit']} {r['stderr'][-200:]}",
                          file=sys.stderr)
    summary = {"seed": a.seed, "cases": len(ids), "runs": sum(counts.values()), "counts": counts,
               "by_base_and_kind": by_kind, "failures": failures,
               "seconds": round(time.monotonic() - started, 1),
               "h5py_hdf5_version": h5py.version.hdf5_version}
    print(json.dumps({k: summary[k] for k in ("seed", "cases", "runs", "counts", "seconds")}))
    if a.json:
        a.json.write_text(json.dumps(summary, indent=1))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
