//! `cartscope._core`: the Rust side of the Python package. Each function is a thin layer over
//! [`cartscope::ops`] (the code a `cartscope run` runs) on numpy arrays: it checks shapes, turns
//! arrays into the library's types, releases the GIL while Rust computes and hands results
//! back as numpy arrays owned by Python. The AnnData side (which keys, which defaults) lives in
//! the Python package (`python/cartscope`).

use std::sync::OnceLock;

use cartscope::backend::{Backend, BackendChoice, select_backend};
use cartscope::io::{
    AnnData, Column, CountSource, Dense, Frame, ReadOptions, RecordColumn, UnsValue,
};
use cartscope::pp::hvg::{HvgCutoffs, HvgPick};
use cartscope::tl::leiden::LeidenFlavor;
use cartscope::{CsrMatrix, ErrorKind, RunOptions};
use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

/// A cartscope error as the Python exception its kind calls for, with the CLI's one-line text.
fn py_err(e: cartscope::Error) -> PyErr {
    match e.kind() {
        ErrorKind::BadInput | ErrorKind::Usage => PyValueError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn bad(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// Runs `f` with the GIL released, then raises KeyboardInterrupt if Ctrl-C came meanwhile
/// (before anything is written back into the caller's objects).
fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    let out = py.detach(f);
    py.check_signals().map_err(|e| {
        if e.is_instance_of::<PyKeyboardInterrupt>(py) {
            e
        } else {
            PyRuntimeError::new_err(e.to_string())
        }
    })?;
    Ok(out)
}

/// How long a Ctrl-C waits for the cancelled computation to reach its next checkpoint and end
/// before the KeyboardInterrupt is raised anyway (the thread then ends on its own).
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

/// Computations whose threads are still alive (cancelled ones included until they end).
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The number of computations still running on their threads: 0 once a cancelled call's
/// thread has ended (for tests of Ctrl-C).
#[pyfunction]
fn _running() -> usize {
    RUNNING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Runs `f` (which owns its inputs) on a thread of its own under a cancellation token and
/// waits with the GIL released, looking for Ctrl-C every 50 ms. On KeyboardInterrupt the token
/// is set, so the computation stops at its next checkpoint (a stage, an epoch, an iteration)
/// and frees what it holds; the call waits up to [`CANCEL_WAIT`] for that, then raises.
/// Nothing is written into the caller's objects. A panic in `f` becomes a RuntimeError.
fn interruptible<T: Send + 'static>(
    py: Python<'_>,
    f: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let (tx, rx) = channel();
    let token = cartscope::cancel::Token::new();
    RUNNING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let theirs = token.clone();
    std::thread::Builder::new()
        .name("cartscope".into())
        .spawn(move || {
            /// Counts the thread out when it ends, whichever way.
            struct Running;
            impl Drop for Running {
                fn drop(&mut self) {
                    RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let _running = Running;
            if let Some(v) = cartscope::cancel::run(&theirs, f) {
                let _ = tx.send(v);
            }
        })
        .map_err(|e| {
            RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            PyRuntimeError::new_err(format!("cannot start a thread: {e}"))
        })?;
    let mut rx = Some(rx);
    loop {
        // The receiver is not Sync: it moves into the GIL-free closure and back.
        let (got, back) = py.detach(move || {
            let r = rx.take().expect("receiver present");
            (r.recv_timeout(std::time::Duration::from_millis(50)), r)
        });
        rx = Some(back);
        match got {
            Ok(v) => return Ok(v),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    token.cancel();
                    let r = rx.take().expect("receiver present");
                    // Ends when the thread does (the sender drops) or after the wait.
                    py.detach(move || drop(r.recv_timeout(CANCEL_WAIT)));
                    return Err(interrupt);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "internal error: the computation panicked (see the message above)",
                ));
            }
        }
    }
}

/// A backend opened once per process, with the reason `auto` fell back to the CPU.
type Opened = (Box<dyn Backend>, Option<String>);

/// The backend for `name` ("auto", "cpu", "gpu"), opened once per process.
fn opened(name: &str) -> PyResult<&'static Opened> {
    static CPU: OnceLock<Opened> = OnceLock::new();
    static AUTO: OnceLock<Opened> = OnceLock::new();
    static GPU: OnceLock<Opened> = OnceLock::new();
    let (choice, cell) = match name {
        "cpu" => (BackendChoice::Cpu, &CPU),
        "auto" => (BackendChoice::Auto, &AUTO),
        "gpu" => (BackendChoice::Gpu, &GPU),
        other => {
            return Err(bad(format!(
                "backend must be \"auto\", \"cpu\" or \"gpu\", not {other:?}"
            )));
        }
    };
    if let Some(b) = cell.get() {
        return Ok(b);
    }
    let s = select_backend(choice).map_err(py_err)?;
    Ok(cell.get_or_init(|| (s.backend, s.fallback_reason)))
}

fn backend(name: &str) -> PyResult<&'static dyn Backend> {
    Ok(opened(name)?.0.as_ref())
}

/// A CSR matrix from scipy's arrays (int64 indptr, int32 indices, float32 data), checked.
fn csr(
    indptr: &PyReadonlyArray1<'_, i64>,
    indices: &PyReadonlyArray1<'_, i32>,
    data: &PyReadonlyArray1<'_, f32>,
    n_cols: usize,
) -> PyResult<CsrMatrix> {
    let (p, i, d) = (indptr.as_slice()?, indices.as_slice()?, data.as_slice()?);
    CsrMatrix::from_slices(p, i, d, n_cols).map_err(|e| bad(format!("X: {e}")))
}

/// scipy's int64 row pointers as the library's u64, in place, checked.
fn row_pointers(indptr: &[i64], nnz: usize) -> PyResult<&[u64]> {
    cartscope::matrix::checked_row_pointers(indptr, nnz).map_err(|e| bad(format!("X: {e}")))
}

/// scipy's int32 column indices as the library's u32, in place, checked.
fn column_indices(indices: &[i32], n_cols: usize) -> PyResult<&[u32]> {
    cartscope::matrix::checked_column_indices(indices, n_cols).map_err(|e| bad(format!("X: {e}")))
}

/// A CSR matrix from Python, as the package passes it: scipy's `(indptr int64, indices
/// int32, data float32, n_cols)`.
#[derive(FromPyObject)]
struct CsrIn<'py>(
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray1<'py, i32>,
    PyReadonlyArray1<'py, f32>,
    usize,
);

impl CsrIn<'_> {
    /// The library's matrix (one copy), checked.
    fn matrix(&self) -> PyResult<CsrMatrix> {
        csr(&self.0, &self.1, &self.2, self.3)
    }

    /// The matrix of a graph over the cells: square.
    fn square(&self) -> PyResult<CsrMatrix> {
        let m = self.matrix()?;
        if m.n_rows != m.n_cols {
            return Err(bad(format!(
                "the graph is {} x {}, not square",
                m.n_rows, m.n_cols
            )));
        }
        Ok(m)
    }
}

/// A CSR matrix as the tuple `(data, indices, indptr, shape)` scipy's constructor takes, each
/// array handed over without a copy: indices as uint32 and indptr as uint64, which the package
/// views as int32 and int64 (no index reaches 2^31, no offset 2^63).
fn csr_out<'py, T: numpy::Element>(
    py: Python<'py>,
    m: CsrMatrix<T>,
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            m.data.into_pyarray(py).into_any(),
            m.indices.into_pyarray(py).into_any(),
            m.indptr.into_pyarray(py).into_any(),
            (m.n_rows, m.n_cols).into_pyobject(py)?.into_any(),
        ],
    )
}

fn dense_out<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    cols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let rows = v.len().checked_div(cols).unwrap_or(0);
    let a = Array2::from_shape_vec((rows, cols), v)
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py).into_any())
}

/// A frame column as Python: numpy arrays for numbers and booleans, a list of str for strings,
/// `("categorical", codes, categories, ordered)` and `("masked", values, mask)` for the rest.
fn column_out<'py>(py: Python<'py>, c: Column) -> PyResult<Bound<'py, PyAny>> {
    Ok(match c {
        Column::Str(v) => v.into_pyobject(py)?.into_any(),
        Column::Categorical {
            codes,
            categories,
            ordered,
        } => ("categorical", codes.into_pyarray(py), categories, ordered)
            .into_pyobject(py)?
            .into_any(),
        Column::F64(v) => v.into_pyarray(py).into_any(),
        Column::F32(v) => v.into_pyarray(py).into_any(),
        Column::I64(v) => v.into_pyarray(py).into_any(),
        Column::I32(v) => v.into_pyarray(py).into_any(),
        Column::Bool(v) => v.into_pyarray(py).into_any(),
        Column::NullableInt { values, mask } => {
            ("masked", values.into_pyarray(py), mask.into_pyarray(py))
                .into_pyobject(py)?
                .into_any()
        }
        Column::NullableBool { values, mask } => {
            ("masked", values.into_pyarray(py), mask.into_pyarray(py))
                .into_pyobject(py)?
                .into_any()
        }
        Column::NullableStr { values, mask } => ("masked", values, mask.into_pyarray(py))
            .into_pyobject(py)?
            .into_any(),
    })
}

fn frame_out<'py>(py: Python<'py>, f: Frame) -> PyResult<Bound<'py, PyTuple>> {
    let cols = PyList::empty(py);
    for (name, c) in f.columns {
        cols.append((name, column_out(py, c)?))?;
    }
    PyTuple::new(py, [f.index.into_pyobject(py)?.into_any(), cols.into_any()])
}

/// A frame from Python: the index and `(name, kind, values[, categories])` columns, kind one
/// of `cat` (int32 codes, categories), `str`, `f64`, `i64`, `bool`.
fn frame_in(index: Vec<String>, columns: &Bound<'_, PyList>) -> PyResult<Frame> {
    let mut f = Frame::new(index);
    for item in columns.iter() {
        let t = item.cast::<PyTuple>()?;
        let name: String = t.get_item(0)?.extract()?;
        let kind: String = t.get_item(1)?.extract()?;
        let v = t.get_item(2)?;
        let col = match kind.as_str() {
            "cat" => Column::Categorical {
                codes: v
                    .extract::<PyReadonlyArray1<'_, i32>>()?
                    .as_slice()?
                    .to_vec(),
                categories: t.get_item(3)?.extract()?,
                ordered: false,
            },
            "str" => Column::Str(v.extract()?),
            "f64" => Column::F64(
                v.extract::<PyReadonlyArray1<'_, f64>>()?
                    .as_slice()?
                    .to_vec(),
            ),
            "i64" => Column::I64(
                v.extract::<PyReadonlyArray1<'_, i64>>()?
                    .as_slice()?
                    .to_vec(),
            ),
            "bool" => Column::Bool(
                v.extract::<PyReadonlyArray1<'_, bool>>()?
                    .as_slice()?
                    .to_vec(),
            ),
            other => return Err(bad(format!("obs/{name}: unsupported column kind {other}"))),
        };
        if col.len() != f.index.len() {
            return Err(bad(format!(
                "{name}: {} values for {} rows",
                col.len(),
                f.index.len()
            )));
        }
        f.columns.push((name, col));
    }
    Ok(f)
}

fn uns_out<'py>(py: Python<'py>, v: UnsValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        UnsValue::Int(x) => x.into_pyobject(py)?.into_any(),
        UnsValue::Float(x) => x.into_pyobject(py)?.into_any(),
        UnsValue::Bool(x) => x.into_pyobject(py)?.to_owned().into_any(),
        UnsValue::Str(x) => x.into_pyobject(py)?.into_any(),
        UnsValue::F64s(x) => x.into_pyarray(py).into_any(),
        UnsValue::F32s(x) => x.into_pyarray(py).into_any(),
        UnsValue::I64s(x) => x.into_pyarray(py).into_any(),
        UnsValue::Strs(x) => x.into_pyobject(py)?.into_any(),
        UnsValue::Map(entries) => {
            let d = PyDict::new(py);
            for (k, v) in entries {
                d.set_item(k, uns_out(py, v)?)?;
            }
            d.into_any()
        }
        UnsValue::Records(fields) => {
            // ("records", [(field, values)]): the package builds the numpy record array.
            let l = PyList::empty(py);
            for (name, col) in fields {
                let values = match col {
                    RecordColumn::Str(v) => v.into_pyobject(py)?.into_any(),
                    RecordColumn::F32(v) => v.into_pyarray(py).into_any(),
                    RecordColumn::F64(v) => v.into_pyarray(py).into_any(),
                };
                l.append((name, values))?;
            }
            ("records", l).into_pyobject(py)?.into_any()
        }
    })
}

fn anndata_out<'py>(py: Python<'py>, ad: AnnData) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("obs", frame_out(py, ad.obs)?)?;
    d.set_item("var", frame_out(py, ad.var)?)?;
    match ad.x {
        Some(x) => d.set_item("X", csr_out(py, x)?)?,
        None => d.set_item("X", py.None())?,
    }
    let pairs = PyList::empty(py);
    for (k, m) in ad.layers {
        pairs.append((k, csr_out(py, m)?))?;
    }
    d.set_item("layers", pairs)?;
    for (key, items) in [("obsm", ad.obsm), ("varm", ad.varm)] {
        let l = PyList::empty(py);
        for (k, a) in items {
            let arr = match a {
                Dense::F32(a) => a.into_pyarray(py).into_any(),
                Dense::F64(a) => a.into_pyarray(py).into_any(),
            };
            l.append((k, arr))?;
        }
        d.set_item(key, l)?;
    }
    let l = PyList::empty(py);
    for (k, m) in ad.obsp {
        l.append((k, csr_out(py, m)?))?;
    }
    for (k, m) in ad.obsp_f64 {
        l.append((k, csr_out(py, m)?))?;
    }
    d.set_item("obsp", l)?;
    let u = PyDict::new(py);
    for (k, v) in ad.uns {
        u.set_item(k, uns_out(py, v)?)?;
    }
    d.set_item("uns", u)?;
    Ok(d)
}

/// The compute devices: `[{"backend", "device", "driver", "fallback_reason"}]` for the CPU
/// and for what `auto` and `gpu` open.
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    for name in ["cpu", "auto", "gpu"] {
        let d = PyDict::new(py);
        d.set_item("request", name)?;
        match py.detach(|| {
            opened(name)
                .map(|(b, why)| (b.name(), b.device(), b.driver(), why.clone()))
                .map_err(|e| e.to_string())
        }) {
            Ok((kind, device, driver, reason)) => {
                d.set_item("backend", kind)?;
                d.set_item("device", device)?;
                d.set_item("driver", driver)?;
                d.set_item("fallback_reason", reason)?;
            }
            Err(e) => {
                d.set_item("backend", py.None())?;
                d.set_item("error", e)?;
            }
        }
        out.append(d)?;
    }
    Ok(out)
}

/// Reads a count matrix (h5ad, 10x h5, 10x MTX) as the CLI does: `{"X": csr tuple, "obs",
/// "var", "format", "gene_name_source"}`.
#[pyfunction]
#[pyo3(signature = (path, layer=None, use_raw=false))]
fn read(
    py: Python<'_>,
    path: std::path::PathBuf,
    layer: Option<String>,
    use_raw: bool,
) -> PyResult<Bound<'_, PyDict>> {
    let opts = ReadOptions {
        layer,
        use_raw,
        ..ReadOptions::default()
    };
    let (x, obs, var, format, names) = interruptible(py, move || -> cartscope::Result<_> {
        let mut src = CountSource::open(&path, &opts)?;
        let x = src.read_all()?;
        let format = src.format.as_str();
        Ok((
            x,
            std::mem::take(&mut src.obs),
            std::mem::take(&mut src.var),
            format,
            src.gene_name_source.clone(),
        ))
    })?
    .map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("X", csr_out(py, x)?)?;
    d.set_item("obs", frame_out(py, obs)?)?;
    d.set_item("var", frame_out(py, var)?)?;
    d.set_item("format", format)?;
    d.set_item("gene_name_source", names)?;
    Ok(d)
}

macro_rules! in_place {
    ($norm:ident, $log:ident, $qc:ident, $scale:ident, $t:ty) => {
        /// normalize_total on row-major values in place (`indices`: a sparse matrix's
        /// columns, None for a dense array's rows of `n_cols`); returns the target used and
        /// the totals.
        #[pyfunction]
        #[pyo3(signature = (indptr, indices, n_cols, data, target_sum=None, max_fraction=None))]
        fn $norm<'py>(
            py: Python<'py>,
            indptr: PyReadonlyArray1<'py, i64>,
            indices: Option<PyReadonlyArray1<'py, i32>>,
            n_cols: usize,
            mut data: PyReadwriteArray1<'py, $t>,
            target_sum: Option<f64>,
            max_fraction: Option<f64>,
        ) -> PyResult<(f64, Bound<'py, PyArray1<$t>>)> {
            let d = data.as_slice_mut()?;
            let p = row_pointers(indptr.as_slice()?, d.len())?;
            let idx = match &indices {
                Some(i) => Some(column_indices(i.as_slice()?, n_cols)?),
                None => None,
            };
            if idx.as_ref().is_some_and(|i| i.len() != d.len())
                || (idx.is_none() && p.windows(2).any(|w| (w[1] - w[0]) as usize != n_cols))
            {
                return Err(bad(format!("X: a column index is outside 0..{n_cols}")));
            }
            let o = cartscope::ops::NormalizeTotal {
                target_sum,
                sparse: idx.is_some(),
                exclude_highly_expressed: max_fraction,
            };
            let (target, totals) =
                compute(py, || cartscope::ops::normalize_total(p, idx, n_cols, d, o))?;
            Ok((target, totals.into_pyarray(py)))
        }

        /// scale(zero_center=False) of a sparse matrix's values in place.
        #[pyfunction]
        #[pyo3(signature = (indices, data, std, max_value=None))]
        fn $scale(
            py: Python<'_>,
            indices: PyReadonlyArray1<'_, i32>,
            mut data: PyReadwriteArray1<'_, $t>,
            std: PyReadonlyArray1<'_, f64>,
            max_value: Option<f64>,
        ) -> PyResult<()> {
            let std = std.as_slice()?;
            let idx = column_indices(indices.as_slice()?, std.len())?;
            let d = data.as_slice_mut()?;
            if idx.len() != d.len() {
                return Err(bad("X: indices and data differ in length"));
            }
            compute(py, || cartscope::ops::scale_sparse(idx, d, std, max_value))
        }

        /// log1p of values in place.
        #[pyfunction]
        fn $log(py: Python<'_>, mut data: PyReadwriteArray1<'_, $t>) -> PyResult<()> {
            let d = data.as_slice_mut()?;
            compute(py, || cartscope::ops::log1p(d))
        }

        /// QC metrics of CSR counts.
        #[pyfunction]
        fn $qc<'py>(
            py: Python<'py>,
            indptr: PyReadonlyArray1<'py, i64>,
            indices: PyReadonlyArray1<'py, i32>,
            data: PyReadonlyArray1<'py, $t>,
            n_genes: usize,
            qc_vars: Vec<PyReadonlyArray1<'py, bool>>,
            percent_top: Vec<usize>,
        ) -> PyResult<Bound<'py, PyDict>> {
            let d = data.as_slice()?;
            let p = row_pointers(indptr.as_slice()?, d.len())?;
            let idx = column_indices(indices.as_slice()?, n_genes)?;
            if idx.len() != d.len() {
                return Err(bad("X: indices and data differ in length"));
            }
            let masks: Vec<Vec<bool>> = qc_vars
                .iter()
                .map(|m| m.as_slice().map(<[bool]>::to_vec))
                .collect::<Result<_, _>>()?;
            if masks.iter().any(|m| m.len() != n_genes) {
                return Err(bad("qc_vars: a mask is not one value per gene"));
            }
            let m = compute(py, || {
                cartscope::ops::qc_metrics(p, idx, d, n_genes, &masks, &percent_top)
            })?;
            let out = PyDict::new(py);
            out.set_item("n_genes_by_counts", m.n_genes_by_counts.into_pyarray(py))?;
            out.set_item("total_counts", m.total_counts.into_pyarray(py))?;
            let l = PyList::empty(py);
            for v in m.pct_top {
                l.append(v.into_pyarray(py))?;
            }
            out.set_item("pct_top", l)?;
            let l = PyList::empty(py);
            for v in m.qc_totals {
                l.append(v.into_pyarray(py))?;
            }
            out.set_item("qc_totals", l)?;
            out.set_item("n_cells_by_counts", m.n_cells_by_counts.into_pyarray(py))?;
            out.set_item("gene_totals", m.gene_totals.into_pyarray(py))?;
            Ok(out)
        }
    };
}
in_place!(
    normalize_total_f32,
    log1p_f32,
    qc_metrics_f32,
    scale_sparse_f32,
    f32
);
in_place!(
    normalize_total_f64,
    log1p_f64,
    qc_metrics_f64,
    scale_sparse_f64,
    f64
);

fn parse<T: clap::ValueEnum>(what: &str, s: &str) -> PyResult<T> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        bad(format!(
            "{what} must be one of {}, not {s:?}",
            names.join(", ")
        ))
    })
}

/// highly_variable_genes: `(highly_variable, [(column, values)])`; `cutoffs` are
/// `(min_mean, max_mean, min_disp, max_disp)` and replace `n_top_genes` when given.
#[pyfunction]
#[pyo3(signature = (x, var_names, flavor, n_top_genes, cutoffs, n_bins, batch_codes, batch_categories, backend_name))]
#[allow(clippy::too_many_arguments)]
fn highly_variable_genes<'py>(
    py: Python<'py>,
    x: CsrIn<'py>,
    var_names: Vec<String>,
    flavor: &str,
    n_top_genes: usize,
    cutoffs: Option<(f64, f64, f64, f64)>,
    n_bins: usize,
    batch_codes: Option<PyReadonlyArray1<'py, u32>>,
    batch_categories: Option<Vec<String>>,
    backend_name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let x = x.matrix()?;
    let flavor = parse("flavor", flavor)?;
    let batches = match (batch_codes, batch_categories) {
        (Some(c), Some(cats)) => Some((cats, c.as_slice()?.to_vec())),
        _ => None,
    };
    let pick = match cutoffs {
        Some((min_mean, max_mean, min_disp, max_disp)) => HvgPick::Cutoffs(HvgCutoffs {
            min_mean,
            max_mean,
            min_disp,
            max_disp,
        }),
        None => HvgPick::Top(n_top_genes),
    };
    let b = backend(backend_name)?;
    let sel = interruptible(py, move || {
        cartscope::ops::highly_variable_genes(x, var_names, flavor, pick, n_bins, batches, b)
    })?
    .map_err(py_err)?;
    let (hv, cols) = (sel.highly_variable, sel.var_columns);
    let l = PyList::empty(py);
    for (name, c) in cols {
        l.append((name, column_out(py, c)?))?;
    }
    PyTuple::new(py, [hv.into_pyarray(py).into_any(), l.into_any()])
}

/// Per-gene mean and std (ddof 1).
#[pyfunction]
fn mean_std<'py>(
    py: Python<'py>,
    x: CsrIn<'py>,
    backend_name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let x = x.matrix()?;
    let b = backend(backend_name)?;
    let (m, s) = interruptible(py, move || cartscope::ops::mean_std(&x, b))?;
    PyTuple::new(py, [m.into_pyarray(py), s.into_pyarray(py)])
}

/// scale: the dense scaled matrix (float64).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn scale<'py>(
    py: Python<'py>,
    x: CsrIn<'py>,
    mean: Vec<f64>,
    std: Vec<f64>,
    zero_center: bool,
    max_value: Option<f64>,
    backend_name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let x = x.matrix()?;
    let n_cols = x.n_cols;
    if mean.len() != n_cols || std.len() != n_cols {
        return Err(bad("scale: mean and std need one value per gene"));
    }
    let b = backend(backend_name)?;
    let cols: Vec<u32> = (0..n_cols as u32).collect();
    let out = interruptible(py, move || {
        let mut out = vec![0.0f64; x.n_rows * n_cols];
        let spec = cartscope::backend::ScaleSpec {
            cols: &cols,
            mean: &mean,
            std: &std,
            max_value,
        };
        cartscope::ops::scale_into(&x, &spec, zero_center, b, &mut out);
        out
    })?;
    dense_out(py, out, n_cols)
}

fn pca_out<'py>(
    py: Python<'py>,
    fit: cartscope::tl::pca::Pca,
    x_pca: Vec<f32>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let c = fit.n_comps;
    d.set_item("X_pca", dense_out(py, x_pca, c)?)?;
    d.set_item("components", dense_out(py, fit.components, c)?)?;
    d.set_item("variance", fit.variance.into_pyarray(py))?;
    d.set_item("variance_ratio", fit.variance_ratio.into_pyarray(py))?;
    d.set_item("mean", fit.mean.into_pyarray(py))?;
    Ok(d)
}

/// PCA of a dense float32 matrix (C order).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn pca_dense<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f32>,
    n_comps: usize,
    solver: &str,
    zero_center: bool,
    backend_name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let k = x.shape()[1];
    let s = x.as_slice()?;
    let solver = parse("svd_solver", solver)?;
    let b = backend(backend_name)?;
    let (fit, xp) = compute(py, || {
        cartscope::ops::pca_dense(s, k, n_comps, solver, zero_center, b)
    })?
    .map_err(py_err)?;
    pca_out(py, fit, xp)
}

/// PCA of the columns `cols` of a CSR matrix, centred implicitly.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn pca_sparse<'py>(
    py: Python<'py>,
    x: CsrIn<'py>,
    cols: Vec<u32>,
    n_comps: usize,
    solver: &str,
    zero_center: bool,
    backend_name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let x = x.matrix()?;
    let n_cols = x.n_cols;
    if cols.iter().any(|&c| c as usize >= n_cols) {
        return Err(bad("pca: a gene of the mask is outside the matrix"));
    }
    let solver = parse("svd_solver", solver)?;
    let b = backend(backend_name)?;
    let (fit, xp) = interruptible(py, move || {
        cartscope::ops::pca_sparse(&x, &cols, n_comps, solver, zero_center, b)
    })?
    .map_err(py_err)?;
    pca_out(py, fit, xp)
}

/// neighbors: `(k, connectivities, distances)` as scipy CSR tuples.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn neighbors<'py>(
    py: Python<'py>,
    points: PyReadonlyArray2<'py, f32>,
    n_neighbors: usize,
    method: &str,
    metric: &str,
    seed: u64,
    backend_name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let dim = points.shape()[1];
    // A copy (cells x PCs, small beside X) lets Ctrl-C return at once.
    let p = points.as_slice()?.to_vec();
    let method = parse("knn method", method)?;
    let metric = parse("metric", metric)?;
    let b = backend(backend_name)?;
    let (k, conn, dist) = interruptible(py, move || {
        cartscope::ops::neighbors(&p, dim, n_neighbors, method, metric, seed, b)
    })?;
    PyTuple::new(
        py,
        [
            k.into_pyobject(py)?.into_any(),
            csr_out(py, conn)?.into_any(),
            csr_out(py, dist)?.into_any(),
        ],
    )
}

/// leiden: `(membership, n_clusters, modularity)`; flavor "leidenalg" when `leidenalg`,
/// otherwise "igraph".
#[pyfunction]
fn leiden<'py>(
    py: Python<'py>,
    g: CsrIn<'py>,
    leidenalg: bool,
    resolution: f64,
    n_iterations: i64,
    seed: u64,
) -> PyResult<Bound<'py, PyTuple>> {
    let adj = g.square()?;
    let c = interruptible(py, move || {
        let flavor = if leidenalg {
            LeidenFlavor::Leidenalg
        } else {
            LeidenFlavor::Igraph
        };
        cartscope::ops::leiden(&adj, flavor, resolution, n_iterations, seed)
    })?;
    PyTuple::new(
        py,
        [
            c.membership.into_pyarray(py).into_any(),
            c.n_clusters.into_pyobject(py)?.into_any(),
            c.modularity.into_pyobject(py)?.into_any(),
        ],
    )
}

/// umap: `(embedding, a, b)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn umap<'py>(
    py: Python<'py>,
    g: CsrIn<'py>,
    init_data: Option<PyReadonlyArray2<'py, f32>>,
    min_dist: f64,
    spread: f64,
    n_epochs: Option<usize>,
    negative_sample_rate: usize,
    alpha: f64,
    gamma: f64,
    n_components: usize,
    seed: u64,
    ab: Option<(f64, f64)>,
    backend_name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let conn = g.square()?;
    let init = match &init_data {
        Some(a) => Some((a.as_slice()?.to_vec(), a.shape()[1])),
        None => None,
    };
    let params = cartscope::tl::umap::UmapParams {
        min_dist,
        spread,
        n_epochs,
        negative_sample_rate,
        learning_rate: alpha,
        repulsion_strength: gamma,
        n_components,
        seed,
        ab,
    };
    let b = backend(backend_name)?;
    let u = interruptible(py, move || {
        let init = init.as_ref().map(|(v, d)| (&v[..], *d));
        cartscope::ops::umap(&conn, init, &params, b)
    })?
    .map_err(py_err)?;
    PyTuple::new(
        py,
        [
            dense_out(py, u.embedding, n_components)?,
            u.a.into_pyobject(py)?.into_any(),
            u.b.into_pyobject(py)?.into_any(),
        ],
    )
}

/// score_genes: one score per cell.
#[pyfunction]
#[pyo3(signature = (x, var_names, gene_list, ctrl_size, gene_pool, n_bins, random_state, backend_name))]
#[allow(clippy::too_many_arguments)]
fn score_genes<'py>(
    py: Python<'py>,
    x: CsrIn<'py>,
    var_names: Vec<String>,
    gene_list: Vec<String>,
    ctrl_size: usize,
    gene_pool: Option<Vec<String>>,
    n_bins: usize,
    random_state: u32,
    backend_name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let x = x.matrix()?;
    let b = backend(backend_name)?;
    let draw = cartscope::cart::score::ControlDraw {
        ctrl_size,
        n_bins,
        random_state,
        pool: None,
    };
    let s = interruptible(py, move || {
        cartscope::ops::score_genes(&x, &var_names, &gene_list, gene_pool.as_deref(), draw, b)
    })?
    .map_err(py_err)?;
    Ok(s.into_pyarray(py).into_any())
}

/// rank_genes_groups: `(uns["rank_genes_groups"] as nested Python values, groups_order,
/// [pts per group], [pts_rest per group] or None)`.
#[pyfunction]
#[pyo3(signature = (x, var_names, groupby, codes, labels, groups, reference, method, n_genes, tie_correct, corr_method, rankby_abs, backend_name))]
#[allow(clippy::too_many_arguments)]
fn rank_genes_groups<'py>(
    py: Python<'py>,
    x: CsrIn<'py>,
    var_names: Vec<String>,
    groupby: String,
    codes: PyReadonlyArray1<'py, i32>,
    labels: Vec<String>,
    groups: Option<Vec<String>>,
    reference: Option<String>,
    method: &str,
    n_genes: Option<usize>,
    tie_correct: bool,
    corr_method: &str,
    rankby_abs: bool,
    backend_name: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let x = x.matrix()?;
    let codes = codes.as_slice()?.to_vec();
    if codes.len() != x.n_rows || codes.iter().any(|&c| c >= labels.len() as i32) {
        return Err(bad(format!(
            "{groupby}: one group code per cell, within the categories"
        )));
    }
    let query = cartscope::ops::RankQuery {
        groupby,
        codes,
        labels,
        groups,
        reference,
        method: parse("method", method)?,
        n_genes,
        tie_correct,
        correction: parse("corr_method", corr_method)?,
        rankby_abs,
    };
    let b = backend(backend_name)?;
    let r = interruptible(py, move || {
        cartscope::ops::rank_genes_groups(x, var_names, query, b)
    })?
    .map_err(py_err)?;
    let arrays = |v: Vec<Vec<f64>>| -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, v.into_iter().map(|a| a.into_pyarray(py)))
    };
    let rest = match r.pts_rest {
        Some(v) => arrays(v)?.into_any(),
        None => py.None().into_bound(py),
    };
    PyTuple::new(
        py,
        [
            uns_out(py, r.uns)?,
            PyList::new(py, r.groups_order)?.into_any(),
            arrays(r.pts)?.into_any(),
            rest,
        ],
    )
}

/// The whole recipe of `cartscope run` on counts in memory: `{"adata": ..., "summary": JSON
/// text, "report_html": str | None}`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    x: CsrIn<'py>,
    obs_names: Vec<String>,
    obs_columns: Bound<'py, PyList>,
    var_names: Vec<String>,
    options_json: &str,
    backend_name: &str,
    report: bool,
    name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let x = x.matrix()?;
    if x.n_cols != var_names.len() {
        return Err(bad("X: one column per var name"));
    }
    let obs = frame_in(obs_names, &obs_columns)?;
    let var = Frame::new(var_names);
    let opts: RunOptions =
        serde_json::from_str(options_json).map_err(|e| bad(format!("options: {e}")))?;
    let b = backend(backend_name)?;
    let name = name.to_string();
    let r = interruptible(py, move || -> cartscope::Result<_> {
        let src = CountSource::from_memory(&name, x, obs, var)?;
        cartscope::ops::run(src, &opts, b, report)
    })?
    .map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("adata", anndata_out(py, r.adata)?)?;
    d.set_item(
        "summary",
        serde_json::to_string(&r.summary).map_err(|e| PyRuntimeError::new_err(e.to_string()))?,
    )?;
    d.set_item("report_html", r.report_html)?;
    Ok(d)
}

/// The extension module.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_total_f32, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_total_f64, m)?)?;
    m.add_function(wrap_pyfunction!(scale_sparse_f32, m)?)?;
    m.add_function(wrap_pyfunction!(scale_sparse_f64, m)?)?;
    m.add_function(wrap_pyfunction!(log1p_f32, m)?)?;
    m.add_function(wrap_pyfunction!(log1p_f64, m)?)?;
    m.add_function(wrap_pyfunction!(qc_metrics_f32, m)?)?;
    m.add_function(wrap_pyfunction!(qc_metrics_f64, m)?)?;
    m.add_function(wrap_pyfunction!(highly_variable_genes, m)?)?;
    m.add_function(wrap_pyfunction!(mean_std, m)?)?;
    m.add_function(wrap_pyfunction!(scale, m)?)?;
    m.add_function(wrap_pyfunction!(pca_dense, m)?)?;
    m.add_function(wrap_pyfunction!(pca_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(neighbors, m)?)?;
    m.add_function(wrap_pyfunction!(leiden, m)?)?;
    m.add_function(wrap_pyfunction!(umap, m)?)?;
    m.add_function(wrap_pyfunction!(score_genes, m)?)?;
    m.add_function(wrap_pyfunction!(rank_genes_groups, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(_running, m)?)?;
    Ok(())
}
