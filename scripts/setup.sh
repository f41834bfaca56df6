#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for building and testing cartscope:
# a C toolchain and cmake >= 3.26 for the HDF5 2.2 that the build compiles into the binary
# (gcc and make from Debian; cmake from PyPI into the venv, as Debian 12's is 3.25; no
# libhdf5-dev), a Vulkan driver that runs on the CPU (lavapipe, from
# mesa-vulkan-drivers, so the GPU backend's shaders run in tests without a GPU), chromium (the
# report's browser test) and a Python venv with anndata for the interop tests.
# Idempotent: does nothing that is already done. Source it or run it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v make >/dev/null || need_apt+=(make)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# lavapipe's ICD file and the Vulkan loader (skipped where a Vulkan driver is already present).
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || ! ldconfig -p | grep -q 'libvulkan.so.1'; then
  need_apt+=(mesa-vulkan-drivers libvulkan1)
fi
# Headless browser for the report test (tests/it/cart.rs).
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust 1.95 (rustup) first" >&2
  exit 1
fi

# The venv lives outside the clone when CARTSCOPE_VENV says so (CI keeps it between runs).
venv="${CARTSCOPE_VENV:-$root/.venv}"
req="$root/tests/python/requirements.txt"
stamp="$venv/.cartscope-requirements"
# The test requirements include the reference pipeline's (scanpy for the Leiden test): the stamp
# holds both, so a change to either reinstalls.
wanted="$(cat "$req" "$root/reference/requirements.txt")"
if [ ! -x "$venv/bin/python" ] || [ "$wanted" != "$(cat "$stamp" 2>/dev/null)" ]; then
  echo "setup: preparing Python venv at $venv" >&2
  python3 -m venv "$venv"
  (cd "$root/tests/python" && "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt)
  printf '%s\n' "$wanted" > "$stamp"
fi
export CARTSCOPE_PYTHON="$venv/bin/python"
# cmake for the bundled HDF5 build (hdf5-metno-src needs >= 3.26); the cmake crate reads $CMAKE.
cmake_version=3.31.6
if [ "$("$venv/bin/cmake" --version 2>/dev/null | head -1)" != "cmake version $cmake_version" ]; then
  echo "setup: installing cmake $cmake_version into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "cmake==$cmake_version"
fi
export CMAKE="$venv/bin/cmake"
# The workflow test runs workflow/Snakefile with the venv's snakemake.
export CARTSCOPE_SNAKEMAKE="$venv/bin/snakemake"

# Real single-cell data for the golden tests: 200 T cells (Wu et al. 2020) shipped in the
# scirpy wheel on PyPI (BSD-3), cached outside the source tree.
cache="${CARTSCOPE_CACHE:-$root/.cache}"
real="$cache/wu2020_200_v0_11.h5ad"
fetch_scirpy_wheel() {
  if ! ls "$cache"/whl/scirpy-0.22.5-*.whl >/dev/null 2>&1; then
    echo "setup: fetching real test data (scirpy wheel)" >&2
    mkdir -p "$cache/whl"
    "$venv/bin/pip" download --no-deps -q --disable-pip-version-check -d "$cache/whl" scirpy==0.22.5
  fi
}
if [ ! -s "$real" ]; then
  fetch_scirpy_wheel
  "$venv/bin/python" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('scirpy/tests/data/wu2020_200_v0_11.h5ad', sys.argv[2])" "$(ls "$cache"/whl/scirpy-0.22.5-*.whl)" "$cache/extract"
  mv "$cache/extract/scirpy/tests/data/wu2020_200_v0_11.h5ad" "$real"
fi
# Contig tables for the VDJ tests (tests/it/vdj.rs), from the same wheel, under $cache/vdj:
# 10x Cell Ranger contig annotations (T cells, B cells, an all_contig table with non-cells)
# and AIRR rearrangement TSVs.
vdj_files=(
  10x/filtered_contig_annotations.csv
  10x/vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz
  10x/sc5p_v2_hs_melanoma_10k_b_filtered_contig_annotations.csv.gz
  10x/10k_BMMNC_5pv2_nextgem_Multiplex_vdj_t_all_contig_annotations_small.csv
  airr/issue_625.tsv
  airr/rearrangement_ig.tsv
  airr/rearrangement_tra.tsv
  airr/rearrangement_trb.tsv
  airr/tra_issue_280.tsv
)
vdj_missing=()
for f in "${vdj_files[@]}"; do
  [ -s "$cache/vdj/$f" ] || vdj_missing+=("$f")
done
if [ ${#vdj_missing[@]} -gt 0 ]; then
  fetch_scirpy_wheel
  "$venv/bin/python" - "$(ls "$cache"/whl/scirpy-0.22.5-*.whl)" "$cache/vdj" "${vdj_missing[@]}" <<'PY'
import os, sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        out = os.path.join(dest, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out + ".part", "wb") as f:
            f.write(z.read("scirpy/tests/data/" + name))
        os.replace(out + ".part", out)
PY
fi
export CARTSCOPE_REAL_DATA="$cache"
# lavapipe warns when XDG_RUNTIME_DIR is unset (harmless; keeps test logs clean).
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
