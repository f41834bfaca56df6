//! Variable-length strings read from the file's bytes, not through libhdf5's conversion.
//!
//! anndata stores every name and category as a variable-length string: in the dataset, one
//! descriptor per element (a 4-byte length, the file address of a global heap collection and a
//! 4-byte object index); the bytes themselves in the collection. libhdf5 1.10 trusts both
//! completely: a damaged length makes it allocate up to 4 GiB per element before reading
//! anything, and a collection whose free-space object has size 0 sends it (and HDF5 2.2 still)
//! into an endless loop in `H5HG__cache_heap_deserialize`. Both were found by the
//! damaged-input campaign (`tests/fuzz/corpus.py`).
//!
//! So for datasets, cartscope asks libhdf5 only where the descriptors lie (the contiguous
//! block, or each chunk's address and size), reads those bytes itself, undoes the filters
//! anndata and h5py use (deflate, LZF, shuffle, Fletcher-32), and resolves each descriptor in the
//! collection it points to, checking every length and offset against the file's size. A layout
//! or filter it does not know falls back to libhdf5 (the caller reads as before).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use hdf5::Dataset;
use hdf5::filters::Filter;
use hdf5::plist::dataset_create::Layout;

use crate::error::{Error, Result};

/// Reads the variable-length strings of a 1-d dataset, or `Ok(None)` where its storage is one
/// this reader does not handle (the caller then uses libhdf5).
pub(crate) fn read(path: &Path, field: &str, ds: &Dataset) -> Result<Option<Vec<Vec<u8>>>> {
    let bad = |m: String| Error::invalid(path, field, m);
    let shape = ds.shape();
    let n = match shape.as_slice() {
        [n] => *n,
        _ => return Ok(None),
    };
    let Some(format) = Format::of(ds) else {
        return Ok(None);
    };
    let file = File::open(path).map_err(|e| Error::hdf5(path, field, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::hdf5(path, field, e))?
        .len();
    let raw = match ds.layout() {
        Layout::Contiguous => {
            if n == 0 {
                Vec::new()
            } else {
                let Some(addr) = ds.offset() else {
                    // Never written: every element is the fill value (empty strings).
                    return Ok(Some(vec![Vec::new(); n]));
                };
                let len = (n as u64).saturating_mul(format.width as u64);
                read_at(&file, file_len, addr, len).map_err(bad)?
            }
        }
        Layout::Chunked => match chunked(ds, n, &format, &file, file_len) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(None),
            Err(m) => return Err(bad(m)),
        },
        _ => return Ok(None),
    };
    let mut heaps = Heaps {
        file: &file,
        file_len,
        size_len: format.size_len,
        collections: HashMap::new(),
    };
    let mut out = Vec::with_capacity(n);
    let mut total = 0u64;
    for (i, d) in raw.chunks_exact(format.width).enumerate() {
        let len = u32::from_le_bytes(d[..4].try_into().expect("4 bytes")) as u64;
        let addr = uint(&d[4..4 + format.addr_len]);
        let index = u32::from_le_bytes(d[4 + format.addr_len..].try_into().expect("4 bytes"));
        total = total.saturating_add(len);
        if len > file_len || total > file_len {
            return Err(bad(format!(
                "string {i} claims {len} bytes, more than the file holds (corrupt file?)"
            )));
        }
        if len == 0 {
            out.push(Vec::new());
            continue;
        }
        let bytes = heaps
            .object(addr, index)
            .map_err(|m| bad(format!("string {i}: {m}")))?;
        if (bytes.len() as u64) < len {
            return Err(bad(format!(
                "string {i} claims {len} bytes but its heap object holds {} (corrupt file?)",
                bytes.len()
            )));
        }
        out.push(bytes[..len as usize].to_vec());
    }
    Ok(Some(out))
}

/// How the file encodes a descriptor.
struct Format {
    /// Bytes of a file address ("size of offsets").
    addr_len: usize,
    /// Bytes of a length field ("size of lengths").
    size_len: usize,
    /// Bytes of one descriptor: length, collection address, object index.
    width: usize,
}

impl Format {
    fn of(ds: &Dataset) -> Option<Format> {
        let sizes = ds.file().ok()?.create_plist().ok()?.sizes();
        let (addr_len, size_len): (usize, usize) =
            (sizes.sizeof_addr.into(), sizes.sizeof_size.into());
        if !matches!(addr_len, 2 | 4 | 8) || !matches!(size_len, 2 | 4 | 8) {
            return None;
        }
        Some(Format {
            addr_len,
            size_len,
            width: 4 + addr_len + 4,
        })
    }
}

/// A little-endian unsigned integer of 2, 4 or 8 bytes.
fn uint(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(v)
}

/// `len` bytes at `addr`, both checked against the file's length first.
fn read_at(
    file: &File,
    file_len: u64,
    addr: u64,
    len: u64,
) -> std::result::Result<Vec<u8>, String> {
    let end = addr.checked_add(len).filter(|&e| e <= file_len).ok_or_else(|| {
        format!("{len} bytes at offset {addr} lie beyond the end of the file ({file_len} bytes; truncated or corrupt)")
    })?;
    let mut buf = vec![0u8; (end - addr) as usize];
    file.read_exact_at(&mut buf, addr)
        .map_err(|e| format!("cannot read {len} bytes at offset {addr}: {e}"))?;
    Ok(buf)
}

/// The descriptors of a chunked 1-d dataset, chunk by chunk, filters undone.
fn chunked(
    ds: &Dataset,
    n: usize,
    format: &Format,
    file: &File,
    file_len: u64,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let Some(chunk) = ds.chunk().and_then(|c| c.first().copied()) else {
        return Ok(None);
    };
    let filters = ds.filters();
    if !filters.iter().all(|f| {
        matches!(
            f,
            Filter::Deflate(_) | Filter::Shuffle | Filter::Fletcher32 | Filter::LZF
        )
    }) {
        return Ok(None);
    }
    let Some(n_chunks) = ds.num_chunks() else {
        return Ok(None);
    };
    let width = format.width;
    let chunk_bytes = chunk
        .checked_mul(width)
        .filter(|&b| b > 0 && b as u64 <= file_len.saturating_mul(1100).max(1 << 20))
        .ok_or_else(|| format!("chunks of {chunk} strings are implausible for this file"))?;
    // Unwritten chunks hold the fill value: zero descriptors, i.e. empty strings.
    let mut raw = vec![0u8; n.checked_mul(width).ok_or("too many strings")?];
    for c in 0..n_chunks {
        let info = ds
            .chunk_info(c)
            .ok_or_else(|| format!("cannot locate chunk {c}"))?;
        let start = *info.offset.first().ok_or("a chunk without an offset")? as usize;
        if start >= n || !start.is_multiple_of(chunk) {
            return Err(format!(
                "chunk {c} starts at element {start}, outside the dataset"
            ));
        }
        let stored = read_at(file, file_len, info.addr, info.size)?;
        let data = unfilter(stored, &filters, info.filter_mask, chunk_bytes, width)
            .map_err(|m| format!("chunk {c}: {m}"))?;
        let take = (n - start).min(chunk) * width;
        if data.len() < take {
            return Err(format!(
                "chunk {c} holds {} bytes, {take} expected (corrupt file?)",
                data.len()
            ));
        }
        raw[start * width..start * width + take].copy_from_slice(&data[..take]);
    }
    Ok(Some(raw))
}

/// Undoes the filter pipeline on one stored chunk, last filter first; a filter whose bit is set
/// in `mask` was skipped when writing.
fn unfilter(
    mut data: Vec<u8>,
    filters: &[Filter],
    mask: u32,
    chunk_bytes: usize,
    width: usize,
) -> std::result::Result<Vec<u8>, String> {
    for (i, f) in filters.iter().enumerate().rev() {
        if i < 32 && mask & (1 << i) != 0 {
            continue;
        }
        data = match f {
            Filter::Deflate(_) => {
                let mut out = Vec::with_capacity(chunk_bytes);
                flate2::read::ZlibDecoder::new(data.as_slice())
                    .take(chunk_bytes as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("deflate stream damaged: {e}"))?;
                out
            }
            Filter::LZF => lzf_decompress(&data, chunk_bytes)?,
            Filter::Shuffle => unshuffle(&data, width),
            Filter::Fletcher32 => {
                if data.len() < 4 {
                    return Err("shorter than its checksum".into());
                }
                data.truncate(data.len() - 4);
                data
            }
            _ => return Err("unsupported filter".into()),
        };
        if data.len() > chunk_bytes {
            return Err(format!(
                "decompresses to more than the chunk's {chunk_bytes} bytes"
            ));
        }
    }
    Ok(data)
}

/// HDF5's shuffle filter, undone: byte `b` of element `e` was stored at `b * n + e`.
fn unshuffle(data: &[u8], width: usize) -> Vec<u8> {
    let n = data.len() / width;
    let mut out = data.to_vec();
    for e in 0..n {
        for b in 0..width {
            out[e * width + b] = data[b * n + e];
        }
    }
    out
}

/// LZF decompression (liblzf's format, as h5py's filter 32000 writes it), never writing more
/// than `max` bytes.
fn lzf_decompress(src: &[u8], max: usize) -> std::result::Result<Vec<u8>, String> {
    let damaged = || "LZF stream damaged".to_string();
    let mut out: Vec<u8> = Vec::with_capacity(max);
    let mut i = 0;
    while i < src.len() {
        let ctrl = src[i] as usize;
        i += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            let lit = src.get(i..i + len).ok_or_else(damaged)?;
            if out.len() + len > max {
                return Err(damaged());
            }
            out.extend_from_slice(lit);
            i += len;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *src.get(i).ok_or_else(damaged)? as usize;
                i += 1;
            }
            len += 2;
            let back = ((ctrl & 0x1f) << 8) + *src.get(i).ok_or_else(damaged)? as usize + 1;
            i += 1;
            if back > out.len() || out.len() + len > max {
                return Err(damaged());
            }
            let from = out.len() - back;
            for k in 0..len {
                out.push(out[from + k]);
            }
        }
    }
    Ok(out)
}

/// Global heap collections, each read and indexed once.
struct Heaps<'a> {
    file: &'a File,
    file_len: u64,
    size_len: usize,
    collections: HashMap<u64, Collection>,
}

/// One global heap collection: its bytes and where each object's data lies in them.
struct Collection {
    bytes: Vec<u8>,
    objects: HashMap<u32, (usize, usize)>,
}

impl Heaps<'_> {
    fn object(&mut self, addr: u64, index: u32) -> std::result::Result<&[u8], String> {
        if !self.collections.contains_key(&addr) {
            let c = self.load(addr)?;
            self.collections.insert(addr, c);
        }
        let c = &self.collections[&addr];
        let &(start, len) = c
            .objects
            .get(&index)
            .ok_or_else(|| format!("object {index} is missing from its heap (corrupt file?)"))?;
        Ok(&c.bytes[start..start + len])
    }

    /// Reads the collection at `addr`: "GCOL", version 1, 3 reserved bytes, its total size; then
    /// objects (index u16, reference count u16, 4 reserved bytes, size, data padded to 8 bytes)
    /// until the free-space object (index 0) or the end.
    fn load(&self, addr: u64) -> std::result::Result<Collection, String> {
        let head_len = 8 + self.size_len as u64;
        let head = read_at(self.file, self.file_len, addr, head_len)
            .map_err(|m| format!("its heap: {m}"))?;
        if &head[..4] != b"GCOL" || head[4] != 1 {
            return Err(format!(
                "no heap collection at offset {addr} (corrupt file?)"
            ));
        }
        let size = uint(&head[8..]);
        if size < head_len {
            return Err(format!(
                "heap collection at offset {addr} is too small (corrupt file?)"
            ));
        }
        let bytes =
            read_at(self.file, self.file_len, addr, size).map_err(|m| format!("its heap: {m}"))?;
        let mut objects = HashMap::new();
        let obj_head = 8 + self.size_len;
        let mut at = head_len as usize;
        while at + obj_head <= bytes.len() {
            let index = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as u32;
            let len = uint(&bytes[at + 8..at + obj_head]);
            if index == 0 {
                break;
            }
            let start = at + obj_head;
            let end = (start as u64)
                .checked_add(len)
                .filter(|&e| e <= bytes.len() as u64)
                .ok_or_else(|| {
                    format!("heap object {index} at offset {addr} overruns its collection (corrupt file?)")
                })? as usize;
            objects.insert(index, (start, end - start));
            at = start + (len as usize).div_ceil(8) * 8;
        }
        Ok(Collection { bytes, objects })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdf5::types::VarLenUnicode;

    fn strings(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| match i % 5 {
                0 => String::new(),
                1 => format!("AAACCTG-{i}"),
                2 => "é→ünïcode".repeat(i % 7),
                3 => "x".repeat(i % 300),
                _ => format!("GENE{i:05}"),
            })
            .collect()
    }

    fn write(
        path: &Path,
        values: &[String],
        setup: &dyn Fn(hdf5::DatasetBuilder) -> hdf5::DatasetBuilder,
    ) {
        let f = hdf5::File::create(path).unwrap();
        let data: Vec<VarLenUnicode> = values.iter().map(|s| s.parse().unwrap()).collect();
        let arr = ndarray::Array1::from(data);
        setup(f.new_dataset_builder())
            .with_data(&arr)
            .create("s")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    #[test]
    fn equals_libhdf5_for_every_storage_anndata_uses() {
        let dir = tempfile::tempdir().unwrap();
        type Setup = Box<dyn Fn(hdf5::DatasetBuilder, usize) -> hdf5::DatasetBuilder>;
        let cases: Vec<(&str, Setup)> = vec![
            ("contiguous", Box::new(|b, _| b)),
            ("gzip", Box::new(|b, n| b.chunk(n.min(37)).deflate(4))),
            (
                "shuffle_gzip",
                Box::new(|b, n| b.chunk(n.min(64)).shuffle().deflate(9)),
            ),
            ("lzf", Box::new(|b, n| b.chunk(n.min(50)).lzf())),
            (
                "shuffle_lzf",
                Box::new(|b, n| b.chunk(n.min(20)).shuffle().lzf()),
            ),
            ("plain_chunks", Box::new(|b, n| b.chunk(n.min(7)))),
        ];
        for n in [0usize, 1, 5, 1000] {
            let values = strings(n);
            for (name, setup) in &cases {
                // A chunked dataset needs at least one element.
                if n == 0 && *name != "contiguous" {
                    continue;
                }
                let p = dir.path().join(format!("{name}_{n}.h5"));
                write(&p, &values, &|b| setup(b, n));
                let f = hdf5::File::open(&p).unwrap();
                let ds = f.dataset("s").unwrap();
                let ours = read(&p, "/s", &ds).unwrap().expect("handled");
                let theirs: Vec<Vec<u8>> = ds
                    .read_raw::<VarLenUnicode>()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_bytes().to_vec())
                    .collect();
                assert_eq!(ours, theirs, "{name}, {n} strings");
                let want: Vec<Vec<u8>> = values.iter().map(|s| s.as_bytes().to_vec()).collect();
                assert_eq!(ours, want, "{name}, {n} strings");
            }
        }
    }

    #[test]
    fn a_damaged_length_or_heap_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.h5");
        let values = strings(40);
        write(&p, &values, &|b| b);
        let (addr, file_len) = {
            let f = hdf5::File::open(&p).unwrap();
            let ds = f.dataset("s").unwrap();
            (ds.offset().unwrap(), std::fs::metadata(&p).unwrap().len())
        };
        let original = std::fs::read(&p).unwrap();
        // The error of reading the file with `bytes` written into it at `at`.
        let damaged = |at: usize, bytes: &[u8]| {
            let mut copy = original.clone();
            copy[at..at + bytes.len()].copy_from_slice(bytes);
            std::fs::write(&p, &copy).unwrap();
            let f = hdf5::File::open(&p).unwrap();
            read(&p, "/s", &f.dataset("s").unwrap())
                .unwrap_err()
                .to_string()
        };
        let addr = addr as usize;
        // Element 1's length set to 3 GB.
        let err = damaged(addr + 16, &3_000_000_000u32.to_le_bytes());
        assert!(err.contains("string 1 claims 3000000000 bytes"), "{err}");
        // Element 1's collection address pointed past the end of the file.
        let err = damaged(addr + 20, &(file_len + 8).to_le_bytes());
        assert!(err.contains("beyond the end of the file"), "{err}");
        // The collection's signature zeroed.
        let gcol = original.windows(4).position(|w| w == b"GCOL").unwrap();
        let err = damaged(gcol, &[0; 16]);
        assert!(err.contains("no heap collection"), "{err}");
    }

    #[test]
    fn lzf_and_shuffle_roundtrip_by_hand() {
        // liblzf: a literal run of 3, then a back-reference of length 5 at distance 3.
        let src = [2u8, b'a', b'b', b'c', (3 << 5), 2];
        assert_eq!(lzf_decompress(&src, 100).unwrap(), b"abcabcab");
        assert!(lzf_decompress(&src, 5).is_err());
        assert!(lzf_decompress(&[(1 << 5), 9], 100).is_err());
        assert_eq!(unshuffle(&[1, 3, 2, 4], 2), vec![1, 2, 3, 4]);
    }
}
