//! Typed access to HDF5 elements with checked dtypes.
//!
//! The HDF5 library converts between numeric types silently (int32 read as u8 "succeeds"), so
//! every numeric read here first inspects the stored type and reads it natively, then converts
//! in Rust with explicit range checks. Strings come in three storages (variable-length UTF-8 as
//! anndata writes, variable-length ASCII, and fixed-length bytes as 10x writes); all read as
//! `String`.

use std::ops::Range;
use std::path::Path;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Container, Dataset, Group, Location};
use ndarray::s;

use crate::error::{Error, Result};
use crate::matrix::{advise_huge_pages, map_par, max_par};

/// The numeric storage of a dataset, as far as cartscope cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumType {
    /// Signed integer of the given byte width.
    Int(usize),
    /// Unsigned integer of the given byte width.
    Uint(usize),
    /// IEEE float of the given byte width.
    Float(usize),
    /// Boolean (h5py's enum of FALSE/TRUE).
    Bool,
}

impl NumType {
    /// numpy-style name, e.g. `float32`, `int64`.
    pub fn name(self) -> String {
        match self {
            NumType::Int(w) => format!("int{}", w * 8),
            NumType::Uint(w) => format!("uint{}", w * 8),
            NumType::Float(w) => format!("float{}", w * 8),
            NumType::Bool => "bool".to_string(),
        }
    }
}

fn int_width(s: IntSize) -> usize {
    match s {
        IntSize::U1 => 1,
        IntSize::U2 => 2,
        IntSize::U4 => 4,
        IntSize::U8 => 8,
    }
}

/// The numeric type stored in `c`, or an error naming the field when it is not numeric.
pub fn num_type(path: &Path, field: &str, c: &Container) -> Result<NumType> {
    crate::crash::element(field);
    let td = c
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| Error::hdf5(path, field, e))?;
    match td {
        TypeDescriptor::Integer(s) => Ok(NumType::Int(int_width(s))),
        TypeDescriptor::Unsigned(s) => Ok(NumType::Uint(int_width(s))),
        TypeDescriptor::Float(FloatSize::U4) => Ok(NumType::Float(4)),
        TypeDescriptor::Float(FloatSize::U8) => Ok(NumType::Float(8)),
        TypeDescriptor::Boolean => Ok(NumType::Bool),
        other => Err(Error::invalid(
            path,
            field,
            format!("expected a numeric dataset, found {other}"),
        )),
    }
}

/// Opens an HDF5 file read-only, mapping failures to a clear input error.
///
/// HDF5's advisory file lock is off for reading: inputs are never written, locks fail on many
/// network file systems (the familiar "unable to lock file, errno = 11/38" of h5ad users on
/// NFS or Lustre), and a lock held by a descriptor that a spawned process inherited would
/// otherwise make a finished file unreadable until that process exits.
pub fn open_file(path: &Path) -> Result<hdf5::File> {
    hdf5::File::with_options()
        .with_fapl(|p| p.file_locking(false))
        .open(path)
        .map_err(|e| Error::UnknownFormat {
            path: path.to_path_buf(),
            reason: format!(
                "not a readable HDF5 file (truncated or corrupt?): {}",
                first_line(&e.to_string())
            ),
        })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Opens dataset `name` inside `g`; `field` is its full path for messages.
pub fn dataset(path: &Path, g: &Group, name: &str, field: &str) -> Result<Dataset> {
    crate::crash::metadata_element(field);
    if !g.link_exists(name) {
        return Err(Error::invalid(path, field, "missing"));
    }
    g.dataset(name).map_err(|e| Error::hdf5(path, field, e))
}

/// Opens group `name` inside `g`; `field` is its full path for messages.
pub fn group(path: &Path, g: &Group, name: &str, field: &str) -> Result<Group> {
    crate::crash::metadata_element(field);
    if !g.link_exists(name) {
        return Err(Error::invalid(path, field, "missing"));
    }
    g.group(name).map_err(|e| Error::hdf5(path, field, e))
}

/// Whether `name` inside `g` is a group (false for datasets and missing links).
pub fn is_group(g: &Group, name: &str) -> bool {
    g.link_exists(name) && matches!(g.loc_type_by_name(name), Ok(hdf5::LocationType::Group))
}

/// Whether `name` inside `g` is a dataset.
pub fn is_dataset(g: &Group, name: &str) -> bool {
    g.link_exists(name) && matches!(g.loc_type_by_name(name), Ok(hdf5::LocationType::Dataset))
}

/// Logical sizes above this are checked against the bytes actually stored.
const PLAUSIBILITY_FLOOR: u64 = 64 << 20;
/// deflate cannot compress better than about 1032:1; LZF and shuffle do worse.
const MAX_COMPRESSION_RATIO: u64 = 1100;

/// Rejects a dataset whose shape claims far more data than the file stores: a corrupted shape
/// would otherwise make a reader allocate terabytes before HDF5 notices anything.
pub fn check_plausible(path: &Path, field: &str, ds: &Dataset) -> Result<()> {
    crate::crash::element(field);
    let elem = ds.dtype().map(|t| t.size()).unwrap_or(1) as u64;
    let logical = (ds.size() as u64).saturating_mul(elem);
    if logical > PLAUSIBILITY_FLOOR && logical / MAX_COMPRESSION_RATIO > ds.storage_size() {
        return Err(Error::invalid(
            path,
            field,
            format!(
                "shape {:?} implies {logical} bytes but the file stores only {} bytes for it (corrupt file?)",
                ds.shape(),
                ds.storage_size()
            ),
        ));
    }
    Ok(())
}

/// Length of a 1-d dataset whose size is plausible for the bytes stored.
pub fn len_1d(path: &Path, field: &str, ds: &Dataset) -> Result<usize> {
    crate::crash::element(field);
    check_plausible(path, field, ds)?;
    let shape = ds.shape();
    match shape.as_slice() {
        [n] => Ok(*n),
        _ => Err(Error::invalid(
            path,
            field,
            format!("expected a 1-d array, found shape {shape:?}"),
        )),
    }
}

macro_rules! read_native {
    ($ds:expr, $t:ty, $range:expr) => {
        read_numbers::<$t>($ds, $range)
    };
}

/// Elements `range` of a 1-d numeric dataset as `T`: inflated on worker threads where the
/// dataset is gzip-compressed in a layout [`super::inflate`] reads, else by [`read_native`].
fn read_numbers<T: hdf5::H5Type + bytemuck::Pod + Send>(
    ds: &Dataset,
    range: Range<usize>,
) -> hdf5::Result<Vec<T>> {
    let mut buf: Vec<T> = Vec::with_capacity(range.len());
    advise_huge_pages(
        buf.as_mut_ptr().cast(),
        range.len() * std::mem::size_of::<T>(),
    );
    if super::inflate::read_into(ds, range.clone(), &mut buf)? {
        return Ok(buf);
    }
    read_native(ds, range)
}

/// Elements `range` of a 1-d numeric dataset as `T` (HDF5 converts the byte order) in a new
/// buffer: [`advise_huge_pages`] first, then one `H5Dread` of the hyperslab into it.
fn read_native<T: hdf5::H5Type>(ds: &Dataset, range: Range<usize>) -> hdf5::Result<Vec<T>> {
    let n = range.len();
    let space = ds.space()?;
    let selection: hdf5::Selection = s![range.start..range.end].try_into()?;
    let fspace = space.select(selection)?;
    if fspace.selection_size() != n {
        return Err(hdf5::Error::from("selection size differs from the range"));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let mspace = hdf5::Dataspace::try_new(n)?;
    let mem = hdf5::Datatype::from_type::<T>()?;
    if ds.dtype()?.conv_to::<T>().is_none() {
        return Err(hdf5::Error::from("no conversion from the stored type"));
    }
    let mut buf: Vec<T> = Vec::with_capacity(n);
    advise_huge_pages(buf.as_mut_ptr().cast(), n * std::mem::size_of::<T>());
    // SAFETY: `buf` has room for n elements of T, the memory type given, and the memory space
    // holds exactly n elements. The call, and the query of the library's error stack after a
    // failure, hold the hdf5 crate's global lock.
    let status = hdf5::sync::sync(|| unsafe {
        let status = hdf5_sys::h5d::H5Dread(
            ds.id(),
            mem.id(),
            mspace.id(),
            fspace.id(),
            hdf5_sys::h5p::H5P_DEFAULT,
            buf.as_mut_ptr().cast(),
        );
        if status < 0 {
            Err(hdf5::Error::query().unwrap_or_else(|e| e))
        } else {
            Ok(())
        }
    });
    status?;
    // SAFETY: H5Dread succeeded and wrote all n elements.
    unsafe { buf.set_len(n) };
    Ok(buf)
}

/// Reads elements `range` of a 1-d numeric dataset as f64 (exact for every integer below 2^53).
pub fn read_f64(path: &Path, field: &str, ds: &Dataset, range: Range<usize>) -> Result<Vec<f64>> {
    crate::crash::element(field);
    let t = num_type(path, field, ds)?;
    let e = |err: hdf5::Error| Error::hdf5(path, field, err);
    Ok(match t {
        NumType::Float(8) => read_native!(ds, f64, range).map_err(e)?,
        NumType::Float(_) => read_native!(ds, f32, range)
            .map_err(e)?
            .into_iter()
            .map(f64::from)
            .collect(),
        NumType::Int(8) => read_native!(ds, i64, range)
            .map_err(e)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        NumType::Int(4) => read_native!(ds, i32, range)
            .map_err(e)?
            .into_iter()
            .map(f64::from)
            .collect(),
        NumType::Int(2) => read_native!(ds, i16, range)
            .map_err(e)?
            .into_iter()
            .map(f64::from)
            .collect(),
        NumType::Int(_) => read_native!(ds, i8, range)
            .map_err(e)?
            .into_iter()
            .map(f64::from)
            .collect(),
        NumType::Uint(8) => read_native!(ds, u64, range)
            .map_err(e)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        NumType::Uint(4) => read_native!(ds, u32, range)
            .map_err(e)?
            .into_iter()
            .map(f64::from)
            .collect(),
        NumType::Uint(2) => read_native!(ds, u16, range)
            .map_err(e)?
            .into_iter()
            .map(f64::from)
            .collect(),
        NumType::Uint(_) => read_native!(ds, u8, range)
            .map_err(e)?
            .into_iter()
            .map(f64::from)
            .collect(),
        NumType::Bool => read_native::<bool>(ds, range)
            .map_err(e)?
            .into_iter()
            .map(|b| f64::from(u8::from(b)))
            .collect(),
    })
}

/// Reads elements `range` of a 1-d numeric dataset as f32 values (the matrix value dtype).
/// 32-bit values convert in place (same size: no second buffer); others go through f64, with
/// the same rounding.
pub fn read_f32(path: &Path, field: &str, ds: &Dataset, range: Range<usize>) -> Result<Vec<f32>> {
    crate::crash::element(field);
    let t = num_type(path, field, ds)?;
    let e = |err: hdf5::Error| Error::hdf5(path, field, err);
    match t {
        NumType::Float(4) => return read_native!(ds, f32, range).map_err(e),
        NumType::Int(4) => {
            let v = read_native!(ds, i32, range).map_err(e)?;
            return Ok(v.into_iter().map(|x| x as f32).collect());
        }
        NumType::Uint(4) => {
            let v = read_native!(ds, u32, range).map_err(e)?;
            return Ok(v.into_iter().map(|x| x as f32).collect());
        }
        _ => {}
    }
    Ok(read_f64(path, field, ds, range)?
        .into_iter()
        .map(|v| v as f32)
        .collect())
}

/// Reads elements `range` of a 1-d integer dataset as i64.
pub fn read_i64(path: &Path, field: &str, ds: &Dataset, range: Range<usize>) -> Result<Vec<i64>> {
    crate::crash::element(field);
    let t = num_type(path, field, ds)?;
    let e = |err: hdf5::Error| Error::hdf5(path, field, err);
    Ok(match t {
        NumType::Int(8) => read_native!(ds, i64, range).map_err(e)?,
        NumType::Int(4) => read_native!(ds, i32, range)
            .map_err(e)?
            .into_iter()
            .map(i64::from)
            .collect(),
        NumType::Int(2) => read_native!(ds, i16, range)
            .map_err(e)?
            .into_iter()
            .map(i64::from)
            .collect(),
        NumType::Int(_) => read_native!(ds, i8, range)
            .map_err(e)?
            .into_iter()
            .map(i64::from)
            .collect(),
        NumType::Uint(8) => {
            let v = read_native!(ds, u64, range).map_err(e)?;
            v.into_iter()
                .map(|x| {
                    i64::try_from(x)
                        .map_err(|_| Error::invalid(path, field, format!("value {x} exceeds 2^63")))
                })
                .collect::<Result<_>>()?
        }
        NumType::Uint(4) => read_native!(ds, u32, range)
            .map_err(e)?
            .into_iter()
            .map(i64::from)
            .collect(),
        NumType::Uint(2) => read_native!(ds, u16, range)
            .map_err(e)?
            .into_iter()
            .map(i64::from)
            .collect(),
        NumType::Uint(_) => read_native!(ds, u8, range)
            .map_err(e)?
            .into_iter()
            .map(i64::from)
            .collect(),
        NumType::Bool | NumType::Float(_) => {
            return Err(Error::invalid(
                path,
                field,
                format!("expected integers, found {}", t.name()),
            ));
        }
    })
}

/// Reads elements `range` of an index array (non-negative integers) as u64.
pub fn read_u64(path: &Path, field: &str, ds: &Dataset, range: Range<usize>) -> Result<Vec<u64>> {
    crate::crash::element(field);
    let start = range.start;
    read_i64(path, field, ds, range)?
        .into_iter()
        .enumerate()
        .map(|(k, v)| {
            u64::try_from(v).map_err(|_| {
                Error::invalid(
                    path,
                    field,
                    format!("negative value {v} at position {}", start + k),
                )
            })
        })
        .collect()
}

/// Reads elements `range` of a 1-d integer dataset of indices as u32, each checked to be
/// non-negative and below `bound`. 32-bit stored indices are read as they are, checked in one
/// pass and reinterpreted in place; other widths go through [`read_u64`].
pub fn read_index_u32(
    path: &Path,
    field: &str,
    ds: &Dataset,
    range: Range<usize>,
    bound: u64,
) -> Result<Vec<u32>> {
    crate::crash::element(field);
    let start = range.start;
    let e = |err: hdf5::Error| Error::hdf5(path, field, err);
    let out_of_range = |k: usize, j: i64| {
        let message = if j < 0 {
            format!("negative value {j} at position {}", start + k)
        } else {
            format!(
                "index {j} at position {} is out of range (dimension is {bound})",
                start + k
            )
        };
        Error::invalid(path, field, message)
    };
    // Negative values read as unsigned are above every bound: one vectorised maximum checks
    // both, and only a failed check looks for the position.
    let first_bad = |v: &[u64]| {
        v.iter()
            .position(|&j| j >= bound)
            .expect("a value above the bound")
    };
    let t = num_type(path, field, ds)?;
    match t {
        NumType::Int(4) | NumType::Uint(4) => {
            let v: Vec<u32> = if t == NumType::Int(4) {
                bytemuck::allocation::cast_vec(read_native!(ds, i32, range).map_err(e)?)
            } else {
                read_native!(ds, u32, range).map_err(e)?
            };
            if max_par(&v).is_some_and(|m| u64::from(m) >= bound) {
                let k = v
                    .iter()
                    .position(|&j| u64::from(j) >= bound)
                    .expect("a value above the bound");
                let j = if t == NumType::Int(4) {
                    i64::from(v[k] as i32)
                } else {
                    i64::from(v[k])
                };
                return Err(out_of_range(k, j));
            }
            Ok(v)
        }
        NumType::Int(8) | NumType::Uint(8) => {
            let v: Vec<u64> = if t == NumType::Int(8) {
                bytemuck::allocation::cast_vec(read_native!(ds, i64, range).map_err(e)?)
            } else {
                read_native!(ds, u64, range).map_err(e)?
            };
            if max_par(&v).is_some_and(|m| m >= bound) {
                let k = first_bad(&v);
                let j = if t == NumType::Int(8) {
                    v[k] as i64
                } else {
                    v[k].min(i64::MAX as u64) as i64
                };
                return Err(out_of_range(k, j));
            }
            // Every value is below the bound, itself below 2^32.
            Ok(map_par(&v, |&j| j as u32))
        }
        _ => {
            let v = read_u64(path, field, ds, range)?;
            if max_par(&v).is_some_and(|m| m >= bound) {
                let k = first_bad(&v);
                return Err(out_of_range(k, v[k] as i64));
            }
            Ok(map_par(&v, |&j| j as u32))
        }
    }
}

/// Reads a whole 1-d boolean (or 0/1 integer) dataset.
pub fn read_bool(path: &Path, field: &str, ds: &Dataset) -> Result<Vec<bool>> {
    crate::crash::element(field);
    let n = len_1d(path, field, ds)?;
    if num_type(path, field, ds)? == NumType::Bool {
        return read_native::<bool>(ds, 0..n).map_err(|e| Error::hdf5(path, field, e));
    }
    Ok(read_f64(path, field, ds, 0..n)?
        .into_iter()
        .map(|v| v != 0.0)
        .collect())
}

/// Raw fixed-length string read of a dataset or attribute, via the C API.
fn read_fixed_strings(
    path: &Path,
    field: &str,
    c: &Container,
    is_attr: bool,
    width: usize,
) -> Result<Vec<String>> {
    use hdf5_sys::h5a::H5Aread;
    use hdf5_sys::h5d::H5Dread;
    use hdf5_sys::h5p::H5P_DEFAULT;
    use hdf5_sys::h5s::H5S_ALL;
    let n: usize = c.shape().iter().product();
    let mut buf = vec![0u8; n * width];
    if n == 0 || width == 0 {
        return Ok(vec![String::new(); n]);
    }
    let dtype = c.dtype().map_err(|e| Error::hdf5(path, field, e))?;
    // SAFETY: `buf` holds exactly n elements of the file's own fixed-length string type, which is
    // also the memory type passed, so HDF5 writes n * width bytes and performs no conversion.
    // The HDF5 library is not thread-safe: a raw call takes the hdf5 crate's global lock, as
    // every call the crate makes does.
    let status = hdf5::sync::sync(|| unsafe {
        if is_attr {
            H5Aread(c.id(), dtype.id(), buf.as_mut_ptr().cast())
        } else {
            H5Dread(
                c.id(),
                dtype.id(),
                H5S_ALL,
                H5S_ALL,
                H5P_DEFAULT,
                buf.as_mut_ptr().cast(),
            )
        }
    });
    if status < 0 {
        return Err(Error::invalid(
            path,
            field,
            "HDF5 could not read the fixed-length strings",
        ));
    }
    Ok(buf
        .chunks(width)
        .map(|b| {
            let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end])
                .trim_end_matches(' ')
                .to_string()
        })
        .collect())
}

fn utf8(path: &Path, field: &str, i: usize, bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::invalid(path, field, format!("string {i} is not valid UTF-8")))
}

/// Reads all strings of a dataset (any of the three string storages).
pub fn read_strings(path: &Path, field: &str, ds: &Dataset) -> Result<Vec<String>> {
    crate::crash::element(field);
    check_plausible(path, field, ds)?;
    let vlen = matches!(
        ds.dtype().and_then(|t| t.to_descriptor()),
        Ok(TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii)
    );
    if vlen {
        // libhdf5's own conversion trusts damaged lengths and heaps (see `vlen`).
        if let Some(raw) = super::vlen::read(path, field, ds)? {
            return raw
                .iter()
                .enumerate()
                .map(|(i, b)| utf8(path, field, i, b))
                .collect();
        }
    }
    read_strings_of(path, field, ds, false)
}

fn read_strings_of(path: &Path, field: &str, c: &Container, is_attr: bool) -> Result<Vec<String>> {
    let td = c
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| Error::hdf5(path, field, e))?;
    let e = |err: hdf5::Error| Error::hdf5(path, field, err);
    match td {
        // Never `as_str()`: it trusts the bytes to be UTF-8 (from_utf8_unchecked), and a corrupt
        // file would make that undefined behaviour. Validate instead.
        TypeDescriptor::VarLenUnicode => c
            .read_raw::<VarLenUnicode>()
            .map_err(e)?
            .iter()
            .enumerate()
            .map(|(i, s)| utf8(path, field, i, s.as_bytes()))
            .collect(),
        TypeDescriptor::VarLenAscii => c
            .read_raw::<VarLenAscii>()
            .map_err(e)?
            .iter()
            .enumerate()
            .map(|(i, s)| utf8(path, field, i, s.as_bytes()))
            .collect(),
        TypeDescriptor::FixedAscii(w) | TypeDescriptor::FixedUnicode(w) => {
            read_fixed_strings(path, field, c, is_attr, w)
        }
        other => Err(Error::invalid(
            path,
            field,
            format!("expected strings, found {other}"),
        )),
    }
}

/// A string attribute of `loc`, or `None` when absent.
pub fn attr_string(path: &Path, loc: &Location, name: &str, field: &str) -> Result<Option<String>> {
    crate::crash::metadata_element(field);
    let Some(a) = attr(loc, name) else {
        return Ok(None);
    };
    let mut v = read_strings_of(path, &format!("{field} attribute '{name}'"), &a, true)?;
    Ok(v.pop())
}

/// An attribute of `loc`, or `None` when absent.
pub fn attr(loc: &Location, name: &str) -> Option<Attribute> {
    if loc.attr_names().ok()?.iter().any(|n| n == name) {
        loc.attr(name).ok()
    } else {
        None
    }
}

/// A string-array attribute (e.g. `column-order`); an empty numeric array reads as empty.
pub fn attr_strings(path: &Path, loc: &Location, name: &str, field: &str) -> Result<Vec<String>> {
    crate::crash::metadata_element(field);
    let Some(a) = attr(loc, name) else {
        return Ok(Vec::new());
    };
    if a.size() == 0 {
        return Ok(Vec::new());
    }
    read_strings_of(path, &format!("{field} attribute '{name}'"), &a, true)
}

/// An integer-array attribute (e.g. a sparse matrix's `shape`).
pub fn attr_u64s(path: &Path, loc: &Location, name: &str, field: &str) -> Result<Option<Vec<u64>>> {
    crate::crash::metadata_element(field);
    let Some(a) = attr(loc, name) else {
        return Ok(None);
    };
    let f = format!("{field} attribute '{name}'");
    let t = num_type(path, &f, &a)?;
    let vals: Vec<i64> = match t {
        NumType::Int(_) | NumType::Uint(_) => {
            a.read_raw::<i64>().map_err(|e| Error::hdf5(path, &f, e))?
        }
        NumType::Float(_) => a
            .read_raw::<f64>()
            .map_err(|e| Error::hdf5(path, &f, e))?
            .into_iter()
            .map(|v| v as i64)
            .collect(),
        NumType::Bool => return Err(Error::invalid(path, &f, "expected integers")),
    };
    vals.into_iter()
        .map(|v| {
            u64::try_from(v).map_err(|_| Error::invalid(path, &f, format!("negative value {v}")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// A boolean attribute (h5py enum, or integer).
pub fn attr_bool(path: &Path, loc: &Location, name: &str, field: &str) -> Result<Option<bool>> {
    crate::crash::metadata_element(field);
    let Some(a) = attr(loc, name) else {
        return Ok(None);
    };
    let f = format!("{field} attribute '{name}'");
    match num_type(path, &f, &a)? {
        NumType::Bool => a
            .read_scalar::<bool>()
            .map(Some)
            .map_err(|e| Error::hdf5(path, &f, e)),
        _ => a
            .read_raw::<i64>()
            .map(|v| v.first().map(|&x| x != 0))
            .map_err(|e| Error::hdf5(path, &f, e)),
    }
}

/// Writes `values` as a 1-d dataset of fixed-length byte strings (numpy `S<n>`), the storage
/// 10x Genomics uses and scanpy's `read_10x_h5` decodes with `.astype(str)`.
pub fn write_fixed_strings(g: &Group, name: &str, values: &[String]) -> hdf5::Result<Dataset> {
    use hdf5_sys::h5d::H5Dwrite;
    use hdf5_sys::h5p::H5P_DEFAULT;
    use hdf5_sys::h5s::H5S_ALL;
    let width = values.iter().map(String::len).max().unwrap_or(0).max(1);
    let ds = g
        .new_dataset_builder()
        .empty_as(TypeDescriptor::FixedAscii(width))
        .shape(values.len())
        .create(name)?;
    if values.is_empty() {
        return Ok(ds);
    }
    let mut buf = vec![0u8; width * values.len()];
    for (slot, v) in buf.chunks_mut(width).zip(values) {
        slot[..v.len()].copy_from_slice(v.as_bytes());
    }
    let dtype = ds.dtype()?;
    // SAFETY: `buf` holds exactly len * width bytes, the size of the dataset in its own
    // fixed-length string type, which is also the memory type given. The call holds the hdf5
    // crate's global lock (the library is not thread-safe).
    let status = hdf5::sync::sync(|| unsafe {
        H5Dwrite(
            ds.id(),
            dtype.id(),
            H5S_ALL,
            H5S_ALL,
            H5P_DEFAULT,
            buf.as_ptr().cast(),
        )
    });
    if status < 0 {
        return Err(hdf5::Error::from("H5Dwrite of fixed-length strings failed"));
    }
    Ok(ds)
}
