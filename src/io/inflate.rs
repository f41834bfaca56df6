//! Gzip-compressed HDF5 datasets inflated on worker threads.
//!
//! The HDF5 library is not thread-safe, so every read through it runs under one global lock and
//! inflates its chunks one after another on one core: a compressed count matrix (every 10x
//! `.h5`, and h5ad files written with `compression="gzip"`) reads at zlib's single-core speed.
//! Here the library only hands over each chunk's stored bytes (`H5Dread_chunk`, which bypasses
//! the filter pipeline), and the chunks are inflated (zlib format, as HDF5's deflate filter
//! writes it), unshuffled where the shuffle filter was applied, and copied into place in
//! parallel.
//!
//! Taken only for the layout this code fully understands: a chunked 1-d dataset whose stored
//! type is `T` itself (same class, size and byte order) and whose filters are exactly deflate
//! or shuffle then deflate, every chunk allocated and stored with all its filters. Anything
//! else (and a dataset of a single chunk) is left to `H5Dread`.

use std::ops::Range;

use hdf5::Dataset;
use hdf5::filters::Filter;
use rayon::prelude::*;

/// The inflated read of `range` of `ds` into `out` (empty, with capacity for the range), or
/// `Ok(false)` when the dataset's layout is not one this module reads (then `out` is
/// untouched). Errors name what failed in the stored bytes.
pub(crate) fn read_into<T: hdf5::H5Type + bytemuck::Pod + Send>(
    ds: &Dataset,
    range: Range<usize>,
    out: &mut Vec<T>,
) -> hdf5::Result<bool> {
    let Some(layout) = Layout::of::<T>(ds)? else {
        return Ok(false);
    };
    let n = range.len();
    if n == 0 {
        return Ok(false);
    }
    let first = range.start / layout.chunk;
    let last = (range.end - 1) / layout.chunk + 1;
    if last - first < 2 {
        return Ok(false);
    }
    let Some(stored) = stored_chunks(ds, layout.chunk, first..last)? else {
        return Ok(false);
    };
    let size = std::mem::size_of::<T>();
    // The output split at chunk boundaries, each piece with the chunk it comes from.
    let spare = &mut out.spare_capacity_mut()[..n];
    let mut pieces = Vec::with_capacity(last - first);
    let mut rest = spare;
    for c in first..last {
        let a = (c * layout.chunk).max(range.start);
        let b = ((c + 1) * layout.chunk).min(range.end);
        let (piece, tail) = rest.split_at_mut(b - a);
        pieces.push((c, a - c * layout.chunk, piece));
        rest = tail;
    }
    let chunk_bytes = layout.chunk * size;
    pieces
        .into_par_iter()
        .zip(stored.into_par_iter())
        .try_for_each_init(
            || (vec![0u8; chunk_bytes], vec![0u8; chunk_bytes]),
            |(plain, unshuffled), ((c, skip, piece), bytes)| {
                inflate(&bytes, plain).map_err(|m| {
                    hdf5::Error::from(format!(
                        "chunk {c} (elements from {}): {m}",
                        c * layout.chunk
                    ))
                })?;
                let values: &[u8] = if layout.shuffled {
                    unshuffle(plain, unshuffled, size);
                    unshuffled
                } else {
                    plain
                };
                let src = &values[skip * size..(skip + piece.len()) * size];
                // SAFETY: `piece` has room for `piece.len()` values of T, exactly the bytes of
                // `src`; T is plain old data, so any bytes are a valid T.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        piece.as_mut_ptr().cast(),
                        src.len(),
                    )
                };
                Ok::<(), hdf5::Error>(())
            },
        )?;
    // SAFETY: every piece (together all n slots) was written above.
    unsafe { out.set_len(n) };
    Ok(true)
}

/// What the inflating read needs to know of a dataset.
struct Layout {
    /// Elements per chunk.
    chunk: usize,
    /// Whether the shuffle filter runs before deflate.
    shuffled: bool,
}

impl Layout {
    /// The layout of `ds` when this module can read it as `T`.
    fn of<T: hdf5::H5Type>(ds: &Dataset) -> hdf5::Result<Option<Layout>> {
        let chunk = match ds.chunk().as_deref() {
            Some(&[c]) if c > 0 && ds.ndim() == 1 => c,
            _ => return Ok(None),
        };
        let shuffled = match ds.filters().as_slice() {
            [Filter::Deflate(_)] => false,
            [Filter::Shuffle, Filter::Deflate(_)] => true,
            _ => return Ok(None),
        };
        if !ds.dtype()?.is::<T>() {
            return Ok(None);
        }
        Ok(Some(Layout { chunk, shuffled }))
    }
}

/// The stored (compressed) bytes of chunks `chunks`, read one after another under the
/// library's lock; `None` when a chunk is not allocated or skipped one of its filters.
fn stored_chunks(
    ds: &Dataset,
    chunk: usize,
    chunks: Range<usize>,
) -> hdf5::Result<Option<Vec<Vec<u8>>>> {
    use hdf5_sys::h5::HADDR_UNDEF;
    use hdf5_sys::h5d::{H5Dget_chunk_info_by_coord, H5Dread_chunk2};
    use hdf5_sys::h5p::H5P_DEFAULT;
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let offset = [(c * chunk) as u64];
        let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
        // SAFETY: `offset` has one coordinate per dimension of the 1-d dataset; the outputs
        // are plain integers. The call and the error query hold the hdf5 crate's global lock.
        hdf5::sync::sync(|| unsafe {
            checked(H5Dget_chunk_info_by_coord(
                ds.id(),
                offset.as_ptr(),
                &mut mask,
                &mut addr,
                &mut size,
            ))
        })?;
        if addr == HADDR_UNDEF || mask != 0 || size == 0 {
            return Ok(None);
        }
        let mut bytes = vec![0u8; size as usize];
        let mut len = bytes.len();
        // SAFETY: `bytes` holds `len` bytes, the chunk's stored size, as `len` tells the call.
        hdf5::sync::sync(|| unsafe {
            checked(H5Dread_chunk2(
                ds.id(),
                H5P_DEFAULT,
                offset.as_ptr(),
                &mut mask,
                bytes.as_mut_ptr().cast(),
                &mut len,
            ))
        })?;
        if len != bytes.len() || mask != 0 {
            return Ok(None);
        }
        out.push(bytes);
    }
    Ok(Some(out))
}

/// The library's error for a failed call (`status < 0`); called under the library's lock, so
/// that the error stack is this call's.
fn checked(status: hdf5_sys::h5::herr_t) -> hdf5::Result<()> {
    if status < 0 {
        Err(hdf5::Error::query().unwrap_or_else(|e| e))
    } else {
        Ok(())
    }
}

/// Inflates one zlib stream that must fill `plain` exactly.
fn inflate(stored: &[u8], plain: &mut [u8]) -> Result<(), String> {
    let mut z = flate2::Decompress::new(true);
    match z.decompress(stored, plain, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) if z.total_out() as usize == plain.len() => Ok(()),
        Ok(_) => Err(format!(
            "inflates to {} bytes where the chunk holds {}",
            z.total_out(),
            plain.len()
        )),
        Err(e) => Err(format!("corrupt deflate stream: {e}")),
    }
}

/// Undoes HDF5's shuffle filter: the stored bytes hold byte 0 of every element, then byte 1 of
/// every element, and so on.
fn unshuffle(shuffled: &[u8], plain: &mut [u8], size: usize) {
    let n = shuffled.len() / size;
    for (b, lane) in shuffled.chunks_exact(n).enumerate().take(size) {
        for (e, &v) in lane.iter().enumerate() {
            plain[e * size + b] = v;
        }
    }
    // Bytes past the last whole element are stored as they are.
    let tail = n * size;
    plain[tail..].copy_from_slice(&shuffled[tail..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshuffle_inverts_the_shuffle_filter() {
        // Three 4-byte elements shuffled as HDF5 does, plus one trailing byte.
        let plain: Vec<u8> = (0u8..13).collect();
        let mut shuffled = Vec::new();
        for b in 0..4 {
            for e in 0..3 {
                shuffled.push(plain[e * 4 + b]);
            }
        }
        shuffled.push(12);
        let mut back = vec![0u8; 13];
        unshuffle(&shuffled, &mut back, 4);
        assert_eq!(back, plain);
    }

    #[test]
    fn inflate_checks_the_length_and_the_stream() {
        use std::io::Write;
        let data: Vec<u8> = (0..1000u32).flat_map(|v| (v % 7).to_le_bytes()).collect();
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(4));
        enc.write_all(&data).unwrap();
        let z = enc.finish().unwrap();
        let mut out = vec![0u8; data.len()];
        inflate(&z, &mut out).unwrap();
        assert_eq!(out, data);
        let mut short = vec![0u8; data.len() - 4];
        assert!(inflate(&z, &mut short).is_err());
        let mut long = vec![0u8; data.len() + 4];
        assert!(
            inflate(&z, &mut long)
                .unwrap_err()
                .contains("inflates to 4000")
        );
        let mut bad = z.clone();
        bad[5] ^= 0xff;
        assert!(inflate(&bad, &mut out).is_err());
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    /// A 1-d dataset of `values`, gzip-compressed (with shuffle when asked) in chunks of 1,000.
    fn write<T: hdf5::H5Type>(file: &hdf5::File, name: &str, values: &[T], shuffle: bool) {
        let b = file.new_dataset_builder().chunk(1000);
        let b = if shuffle { b.shuffle() } else { b };
        b.deflate(4).with_data(values).create(name).unwrap();
    }

    #[test]
    fn inflated_reads_equal_the_library_reads_for_every_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.h5");
        let ints: Vec<i32> = (0..10_500).map(|i| (i * 7919) % 1013 - 500).collect();
        let floats: Vec<f32> = (0..10_500).map(|i| (i as f32).sqrt()).collect();
        let wide: Vec<i64> = (0..10_500).map(|i| i64::from(i) << 33).collect();
        {
            let f = hdf5::File::create(&path).unwrap();
            write(&f, "ints", &ints, false);
            write(&f, "floats", &floats, true);
            write(&f, "wide", &wide, true);
            // Layouts left to the library: one chunk, no compression, another filter order.
            f.new_dataset_builder()
                .chunk(10_500)
                .deflate(4)
                .with_data(&ints)
                .create("one")
                .unwrap();
            f.new_dataset_builder()
                .chunk(1000)
                .with_data(&ints)
                .create("plain")
                .unwrap();
        }
        let f = hdf5::File::open(&path).unwrap();
        for range in [
            0..10_500,
            1500..9700,
            999..1001,
            10_000..10_500,
            3000..4000,
            5..5,
        ] {
            let mut got: Vec<i32> = Vec::with_capacity(range.len());
            let ok = read_into(&f.dataset("ints").unwrap(), range.clone(), &mut got).unwrap();
            assert_eq!(
                ok,
                range.end.div_ceil(1000).saturating_sub(range.start / 1000) >= 2
            );
            if ok {
                assert_eq!(got, ints[range.clone()]);
            }
            let mut got: Vec<f32> = Vec::with_capacity(range.len());
            if read_into(&f.dataset("floats").unwrap(), range.clone(), &mut got).unwrap() {
                assert_eq!(got, floats[range.clone()]);
            }
            let mut got: Vec<i64> = Vec::with_capacity(range.len());
            if read_into(&f.dataset("wide").unwrap(), range.clone(), &mut got).unwrap() {
                assert_eq!(got, wide[range.clone()]);
            }
        }
        // The stored type must be T itself.
        let mut as_u32: Vec<u32> = Vec::with_capacity(10_500);
        assert!(!read_into(&f.dataset("ints").unwrap(), 0..10_500, &mut as_u32).unwrap());
        for name in ["one", "plain"] {
            let mut got: Vec<i32> = Vec::with_capacity(10_500);
            assert!(!read_into(&f.dataset(name).unwrap(), 0..10_500, &mut got).unwrap());
            assert!(got.is_empty());
        }
    }

    #[test]
    fn a_corrupt_chunk_is_an_error_naming_the_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.h5");
        let ints: Vec<i32> = (0..5000).map(|i| i % 97).collect();
        {
            let f = hdf5::File::create(&path).unwrap();
            write(&f, "ints", &ints, false);
        }
        // The file address of chunk 2 (elements 2000..3000), then damage its stored bytes.
        let addr = {
            let f = hdf5::File::open(&path).unwrap();
            let ds = f.dataset("ints").unwrap();
            let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
            let offset = [2000u64];
            let status = hdf5::sync::sync(|| unsafe {
                hdf5_sys::h5d::H5Dget_chunk_info_by_coord(
                    ds.id(),
                    offset.as_ptr(),
                    &mut mask,
                    &mut addr,
                    &mut size,
                )
            });
            assert!(status >= 0 && size > 20);
            addr
        };
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[addr as usize + 2..addr as usize + 18] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).unwrap();
        let f = hdf5::File::open(&path).unwrap();
        let mut got: Vec<i32> = Vec::with_capacity(5000);
        let err = read_into(&f.dataset("ints").unwrap(), 0..5000, &mut got).unwrap_err();
        assert!(
            err.to_string().contains("chunk 2 (elements from 2000)"),
            "{err}"
        );
        assert!(got.is_empty());
    }
}
