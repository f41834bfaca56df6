//! Readers of contig tables: 10x Genomics `filtered_contig_annotations.csv` and
//! `all_contig_annotations.csv` (Cell Ranger 2 to 9), and AIRR rearrangement TSV, plain or
//! gzipped. The format is told from the header, the compression from the gzip magic bytes.
//!
//! Both readers keep what scirpy 0.22.5 keeps (`scirpy.io.read_10x_vdj(filtered=True)`,
//! `scirpy.io.read_airr`):
//! - 10x: contigs with `is_cell` and `high_confidence` true, every chain type and every
//!   productive state (those are filtered later, by [`super::chains::index_chains`]);
//!   `full_length` is not looked at. Cells are the barcodes in sorted order (pandas'
//!   `groupby("barcode")`), each cell's contigs in file order. Missing values are pandas'
//!   NA strings (`None`, `NA`, `nan`, empty, ...); booleans are `True`/`False` in any of
//!   pandas' spellings (or `1`/`0`), a missing boolean is false.
//! - AIRR: every row; cells in order of first appearance. Missing values are empty fields and
//!   scirpy's NA strings (`None`, `NaN`, `nan`, `N/A`); booleans are the AIRR library's
//!   spellings (`T`, `true`, `1`, ...). Without a `locus` column the locus is inferred from the
//!   gene calls as scirpy does (`TRAV.../DV...` V genes do not count).
//!
//! Where scirpy silently turns a malformed value into a missing one (an unparsable count or
//! boolean in an AIRR file) or crashes, these readers fail with [`Error::Invalid`] naming file,
//! line and column: a missing required column, a malformed boolean or count, an unknown chain.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::{Contig, ContigFormat, Contigs, Locus};
use crate::error::{Error, Result};
use crate::io::csv::Records;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Columns the 10x reader needs (the ones scirpy reads).
const TENX_REQUIRED: [&str; 14] = [
    "barcode",
    "is_cell",
    "contig_id",
    "high_confidence",
    "chain",
    "v_gene",
    "d_gene",
    "j_gene",
    "c_gene",
    "productive",
    "cdr3",
    "cdr3_nt",
    "reads",
    "umis",
];

/// Reads a contig table, 10x CSV or AIRR TSV, plain or gzipped (told from the content).
pub fn read_contigs(path: &Path) -> Result<Contigs> {
    let text = read_text(path)?;
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or("");
    let tab: Vec<&str> = first.split('\t').collect();
    let comma: Vec<&str> = first.split(',').map(|f| f.trim_matches('"')).collect();
    if tab.len() > 1 && tab.contains(&"cell_id") {
        read_airr_text(path, &text)
    } else if comma.contains(&"barcode") && comma.contains(&"contig_id") {
        read_tenx_text(path, &text)
    } else {
        Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            reason: "not a contig table: neither a 10x contig annotation CSV (columns barcode, \
                     contig_id, ...) nor an AIRR rearrangement TSV (column cell_id)"
                .into(),
        })
    }
}

/// Reads several contig tables as one (scirpy's `read_airr([...])`): the chains of a cell
/// id found in several files are joined, in file order; cells keep the order of their first
/// appearance.
pub fn read_contigs_merged(paths: &[PathBuf]) -> Result<Contigs> {
    let mut parts = Vec::with_capacity(paths.len());
    for p in paths {
        parts.push(read_contigs(p)?);
    }
    Ok(Contigs::merge(parts))
}

fn read_text(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::read(path, e))?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw).map_err(|e| Error::read(path, e))?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid(path, "gzip stream", e.to_string()))?;
        raw = out;
    }
    String::from_utf8(raw).map_err(|e| {
        Error::invalid(
            path,
            format!("byte {}", e.utf8_error().valid_up_to()),
            "not UTF-8 text",
        )
    })
}

/// The header of a table: column name -> index.
struct Header<'p> {
    path: &'p Path,
    columns: HashMap<String, usize>,
    n: usize,
}

impl<'p> Header<'p> {
    fn new(path: &'p Path, fields: &[std::borrow::Cow<'_, str>]) -> Self {
        let mut columns = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            columns.entry(f.to_string()).or_insert(i);
        }
        Header {
            path,
            columns,
            n: fields.len(),
        }
    }

    fn required(&self, name: &str) -> Result<usize> {
        self.columns.get(name).copied().ok_or_else(|| {
            Error::invalid(
                self.path,
                format!("column \"{name}\""),
                "required column missing from the header",
            )
        })
    }

    fn optional(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }
}

/// Where a value sits, for error messages.
fn at(line: usize, column: &str) -> String {
    format!("line {line}, column \"{column}\"")
}

/// pandas' default NA strings (`read_csv(na_values=None)`).
fn pandas_na(s: &str) -> bool {
    matches!(
        s,
        "" | "#N/A"
            | "#N/A N/A"
            | "#NA"
            | "-1.#IND"
            | "-1.#QNAN"
            | "-NaN"
            | "-nan"
            | "1.#IND"
            | "1.#QNAN"
            | "<NA>"
            | "N/A"
            | "NA"
            | "NULL"
            | "NaN"
            | "None"
            | "n/a"
            | "nan"
            | "null"
    )
}

/// scirpy's `_is_na2` on a string.
fn scirpy_na(s: &str) -> bool {
    matches!(s, "" | "NaN" | "nan" | "None" | "N/A")
}

/// A 10x boolean: pandas' true/false spellings or 1/0; NA is false (scirpy's `_is_true`).
fn tenx_bool(s: &str, path: &Path, line: usize, column: &str) -> Result<bool> {
    match s {
        "True" | "TRUE" | "true" | "1" => Ok(true),
        "False" | "FALSE" | "false" | "0" => Ok(false),
        _ if pandas_na(s) => Ok(false),
        _ => Err(Error::invalid(
            path,
            at(line, column),
            format!("{s:?} is not a boolean (expected True or False)"),
        )),
    }
}

/// An AIRR boolean (the AIRR library's spellings); empty or NA is false (not productive).
fn airr_bool(s: &str, path: &Path, line: usize, column: &str) -> Result<bool> {
    match s {
        "T" | "t" | "True" | "true" | "TRUE" | "1" => Ok(true),
        "F" | "f" | "False" | "false" | "FALSE" | "0" => Ok(false),
        _ if scirpy_na(s) => Ok(false),
        _ => Err(Error::invalid(
            path,
            at(line, column),
            format!("{s:?} is not a boolean (expected T or F)"),
        )),
    }
}

/// A count: a non-negative integer (an integral float such as `12.0` too, as pandas reads a
/// column with missing values); `None` when missing.
fn count(
    s: &str,
    na: fn(&str) -> bool,
    path: &Path,
    line: usize,
    col: &str,
) -> Result<Option<u64>> {
    if na(s) {
        return Ok(None);
    }
    if let Ok(v) = s.parse::<u64>() {
        return Ok(Some(v));
    }
    match s.parse::<f64>() {
        Ok(v) if v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 => Ok(Some(v as u64)),
        _ => Err(Error::invalid(
            path,
            at(line, col),
            format!("{s:?} is not a count (a non-negative integer)"),
        )),
    }
}

/// A chain/locus name: one of the seven IMGT loci, or none for `Multi` and missing values.
fn locus(
    s: &str,
    na: fn(&str) -> bool,
    path: &Path,
    line: usize,
    col: &str,
) -> Result<Option<Locus>> {
    if na(s) || s == "Multi" {
        return Ok(None);
    }
    Locus::parse(s).map(Some).ok_or_else(|| {
        Error::invalid(
            path,
            at(line, col),
            format!("unknown chain {s:?} (expected TRA, TRB, TRG, TRD, IGH, IGK, IGL or Multi)"),
        )
    })
}

fn string(s: &str, na: fn(&str) -> bool) -> Option<String> {
    (!na(s)).then(|| s.to_string())
}

fn split_error(path: &Path, e: crate::io::csv::SplitError) -> Error {
    Error::invalid(path, format!("line {}", e.line), e.message)
}

/// Pads a short record with missing values (as pandas and Python's `csv.DictReader` read
/// it); a record longer than the header is an error (as in pandas and the AIRR library).
fn fit_width(path: &Path, rec: &mut crate::io::csv::Record<'_>, want: usize) -> Result<()> {
    let got = rec.fields.len();
    if got > want {
        return Err(Error::invalid(
            path,
            format!("line {}", rec.line),
            format!("{got} fields, the header has {want}"),
        ));
    }
    rec.fields.resize(want, std::borrow::Cow::Borrowed(""));
    Ok(())
}

/// Parses a 10x contig annotation CSV.
fn read_tenx_text(path: &Path, text: &str) -> Result<Contigs> {
    let mut records = Records::new(text, b',');
    let header = match records.next() {
        Some(r) => Header::new(path, &r.map_err(|e| split_error(path, e))?.fields),
        None => return Err(Error::invalid(path, "line 1", "empty file")),
    };
    let mut idx = [0usize; TENX_REQUIRED.len()];
    for (k, name) in TENX_REQUIRED.iter().enumerate() {
        idx[k] = header.required(name)?;
    }
    let [
        barcode,
        is_cell,
        contig_id,
        high_conf,
        chain,
        v,
        d,
        j,
        c,
        productive,
        cdr3,
        cdr3_nt,
        reads,
        umis,
    ] = idx;
    let na = pandas_na as fn(&str) -> bool;
    let mut rows: Vec<(String, Contig)> = Vec::new();
    let mut n_filtered_out = 0;
    for rec in records {
        let mut rec = rec.map_err(|e| split_error(path, e))?;
        fit_width(path, &mut rec, header.n)?;
        let (line, f) = (rec.line, &rec.fields);
        let cell_ok = tenx_bool(&f[is_cell], path, line, "is_cell")?
            && tenx_bool(&f[high_conf], path, line, "high_confidence")?;
        if !cell_ok {
            n_filtered_out += 1;
            continue;
        }
        if na(&f[barcode]) {
            return Err(Error::invalid(path, at(line, "barcode"), "missing barcode"));
        }
        let contig = Contig {
            sequence_id: string(&f[contig_id], na),
            locus: locus(&f[chain], na, path, line, "chain")?,
            productive: tenx_bool(&f[productive], path, line, "productive")?,
            junction: string(&f[cdr3_nt], na),
            junction_aa: string(&f[cdr3], na),
            v_call: string(&f[v], na),
            d_call: string(&f[d], na),
            j_call: string(&f[j], na),
            c_call: string(&f[c], na),
            umi_count: count(&f[umis], na, path, line, "umis")?,
            duplicate_count: None,
            consensus_count: count(&f[reads], na, path, line, "reads")?,
        };
        rows.push((f[barcode].to_string(), contig));
    }
    // pandas' groupby("barcode") visits the barcodes sorted; a stable sort keeps each cell's
    // contigs in file order.
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Contigs::from_rows(
        ContigFormat::TenxCsv,
        path,
        rows,
        n_filtered_out,
    ))
}

/// Column indices of the optional AIRR fields the reader uses.
struct AirrColumns {
    cell_id: usize,
    sequence_id: Option<usize>,
    locus: Option<usize>,
    productive: Option<usize>,
    v_call: Option<usize>,
    d_call: Option<usize>,
    j_call: Option<usize>,
    c_call: Option<usize>,
    junction: Option<usize>,
    junction_aa: Option<usize>,
    umi_count: Option<usize>,
    duplicate_count: Option<usize>,
    consensus_count: Option<usize>,
}

impl AirrColumns {
    fn new(h: &Header<'_>) -> Result<Self> {
        Ok(AirrColumns {
            cell_id: h.required("cell_id")?,
            sequence_id: h.optional("sequence_id"),
            locus: h.optional("locus"),
            productive: h.optional("productive"),
            v_call: h.optional("v_call"),
            d_call: h.optional("d_call"),
            j_call: h.optional("j_call"),
            c_call: h.optional("c_call"),
            junction: h.optional("junction"),
            junction_aa: h.optional("junction_aa"),
            umi_count: h.optional("umi_count"),
            duplicate_count: h.optional("duplicate_count"),
            consensus_count: h.optional("consensus_count"),
        })
    }
}

/// Parses an AIRR rearrangement TSV.
fn read_airr_text(path: &Path, text: &str) -> Result<Contigs> {
    let mut records = Records::new(text, b'\t');
    let header = match records.next() {
        Some(r) => Header::new(path, &r.map_err(|e| split_error(path, e))?.fields),
        None => return Err(Error::invalid(path, "line 1", "empty file")),
    };
    let cols = AirrColumns::new(&header)?;
    let na = scirpy_na as fn(&str) -> bool;
    let mut rows: Vec<(String, Contig)> = Vec::new();
    for rec in records {
        let mut rec = rec.map_err(|e| split_error(path, e))?;
        fit_width(path, &mut rec, header.n)?;
        let (line, f) = (rec.line, &rec.fields);
        let get = |c: Option<usize>| c.and_then(|i| string(&f[i], na));
        let cnt = |c: Option<usize>, name: &str| match c {
            Some(i) => count(&f[i], na, path, line, name),
            None => Ok(None),
        };
        let cell = &f[cols.cell_id];
        if cell.is_empty() {
            return Err(Error::invalid(path, at(line, "cell_id"), "missing cell id"));
        }
        let mut contig = Contig {
            sequence_id: get(cols.sequence_id),
            locus: None,
            productive: match cols.productive {
                Some(i) => airr_bool(&f[i], path, line, "productive")?,
                None => false,
            },
            junction: get(cols.junction),
            junction_aa: get(cols.junction_aa),
            v_call: get(cols.v_call),
            d_call: get(cols.d_call),
            j_call: get(cols.j_call),
            c_call: get(cols.c_call),
            umi_count: cnt(cols.umi_count, "umi_count")?,
            duplicate_count: cnt(cols.duplicate_count, "duplicate_count")?,
            consensus_count: cnt(cols.consensus_count, "consensus_count")?,
        };
        contig.locus = match cols.locus {
            Some(i) => locus(&f[i], na, path, line, "locus")?,
            None => infer_locus(&contig),
        };
        rows.push((cell.to_string(), contig));
    }
    Ok(Contigs::from_rows(ContigFormat::Airr, path, rows, 0))
}

/// scirpy's `_infer_locus_from_gene_names`: the locus whose name every gene call (V, D, J, C;
/// lower-cased) contains; a V gene `TRAV.../DV...` is left out (it points to the delta locus).
fn infer_locus(c: &Contig) -> Option<Locus> {
    let v = c
        .v_call
        .as_deref()
        .filter(|v| !v.find("TRAV").is_some_and(|k| v[k..].contains("/DV")));
    let genes: Vec<String> = [
        v,
        c.d_call.as_deref(),
        c.j_call.as_deref(),
        c.c_call.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(str::to_lowercase)
    .collect();
    if genes.is_empty() {
        return None;
    }
    [
        ("tra", Locus::Tra),
        ("trb", Locus::Trb),
        ("trd", Locus::Trd),
        ("trg", Locus::Trg),
        ("igh", Locus::Igh),
        ("igk", Locus::Igk),
        ("igl", Locus::Igl),
    ]
    .into_iter()
    .find(|(name, _)| genes.iter().all(|g| g.contains(name)))
    .map(|(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const TENX_HEADER: &str = "barcode,is_cell,contig_id,high_confidence,length,chain,v_gene,\
        d_gene,j_gene,c_gene,full_length,productive,cdr3,cdr3_nt,reads,umis,raw_clonotype_id,\
        raw_consensus_id";

    #[test]
    fn tenx_filters_non_cells_and_sorts_barcodes() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{TENX_HEADER}\n\
             B-1,True,B-1_contig_1,True,500,TRB,TRBV1,None,TRBJ1,TRBC1,True,True,CASSF,TGTGCC,100,5,c1,x\n\
             A-1,true,A-1_contig_1,TRUE,500,TRA,TRAV1,None,TRAJ1,TRAC,True,False,CAVF,TGTGCT,50,2.0,c2,x\n\
             A-1,True,A-1_contig_2,False,500,TRA,TRAV2,None,TRAJ1,TRAC,True,True,CAAF,TGTGCA,50,2,c2,x\n\
             C-1,False,C-1_contig_1,True,500,Multi,None,None,TRAJ1,None,False,None,None,None,9,1,None,None\n\
             A-1,True,A-1_contig_3,True,500,Multi,None,None,TRAJ1,None,False,None,None,None,9,None,None,None\n"
        );
        let c = read_contigs(&write(dir.path(), "f.csv", &text)).unwrap();
        assert_eq!(c.format, ContigFormat::TenxCsv);
        assert_eq!(c.barcodes, vec!["A-1", "B-1"]);
        assert_eq!(c.n_filtered_out, 2);
        let a = c.cell(0);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].locus, Some(Locus::Tra));
        assert!(!a[0].productive);
        assert_eq!(a[0].umi_count, Some(2));
        assert_eq!(a[1].locus, None);
        assert_eq!(a[1].junction_aa, None);
        assert_eq!(a[1].umi_count, None);
        assert_eq!(c.cell(1)[0].d_call, None);
        assert_eq!(c.cell(1)[0].junction.as_deref(), Some("TGTGCC"));
    }

    #[test]
    fn tenx_errors_name_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let row = |chain: &str, prod: &str, umis: &str| {
            format!(
                "{TENX_HEADER}\nA-1,True,A-1_contig_1,True,500,{chain},TRAV1,None,TRAJ1,TRAC,True,{prod},CAVF,TGT,50,{umis},c,x\n"
            )
        };
        let msg = |text: String| {
            read_contigs(&write(dir.path(), "e.csv", &text))
                .unwrap_err()
                .to_string()
        };
        let m = msg(row("TRX", "True", "2"));
        assert!(
            m.contains("e.csv") && m.contains("line 2, column \"chain\"") && m.contains("TRX"),
            "{m}"
        );
        let m = msg(row("TRA", "yes", "2"));
        assert!(m.contains("line 2, column \"productive\""), "{m}");
        let m = msg(row("TRA", "True", "-3"));
        assert!(m.contains("line 2, column \"umis\""), "{m}");
        let m = msg(TENX_HEADER.replace(",umis", ",molecules") + "\n");
        assert!(
            m.contains("column \"umis\"") && m.contains("missing"),
            "{m}"
        );
    }

    #[test]
    fn airr_reads_booleans_counts_and_infers_the_locus() {
        let dir = tempfile::tempdir().unwrap();
        let text = "cell_id\tsequence_id\tproductive\tv_call\tj_call\tc_call\tjunction\tjunction_aa\tumi_count\n\
                    c2\ts1\tT\tIGHV1\tIGHJ1\tIGHM\tTGT\tCARW\t7\n\
                    c1\ts2\tF\tTRAV29/DV5\tTRDJ1\t\tTGT\tCAF\t\n\
                    c2\ts3\t\tIGKV1\tIGKJ1\tIGKC\tTGT\tNone\t3\n";
        let c = read_contigs(&write(dir.path(), "r.tsv", text)).unwrap();
        assert_eq!(c.format, ContigFormat::Airr);
        assert_eq!(c.barcodes, vec!["c2", "c1"]);
        let c2 = c.cell(0);
        assert_eq!(c2[0].locus, Some(Locus::Igh));
        assert!(c2[0].productive);
        assert_eq!(c2[1].locus, Some(Locus::Igk));
        assert!(!c2[1].productive);
        assert_eq!(c2[1].junction_aa, None);
        // TRAV29/DV5 is left out: the J gene alone says TRD.
        assert_eq!(c.cell(1)[0].locus, Some(Locus::Trd));
        assert_eq!(c.cell(1)[0].umi_count, None);
    }

    #[test]
    fn airr_errors_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let bad = "cell_id\tlocus\tproductive\nc1\tTRA\tmaybe\n";
        let m = read_contigs(&write(dir.path(), "b.tsv", bad))
            .unwrap_err()
            .to_string();
        assert!(m.contains("line 2, column \"productive\""), "{m}");
        let bad = "cell_id\tlocus\nc1\tTRQ\n";
        let m = read_contigs(&write(dir.path(), "b.tsv", bad))
            .unwrap_err()
            .to_string();
        assert!(m.contains("unknown chain"), "{m}");
        let m = read_contigs(&write(dir.path(), "n.tsv", "sequence_id\tlocus\ns\tTRA\n"))
            .unwrap_err()
            .to_string();
        assert!(m.contains("not a contig table"), "{m}");
        // Short rows are padded with missing values, long rows are errors.
        let c = read_contigs(&write(
            dir.path(),
            "s.tsv",
            "cell_id\tlocus\tjunction_aa\nc1\tTRB\n",
        ))
        .unwrap();
        assert_eq!(c.cell(0)[0].junction_aa, None);
        let m = read_contigs(&write(dir.path(), "l.tsv", "cell_id\tlocus\nc1\tTRB\tx\n"))
            .unwrap_err()
            .to_string();
        assert!(m.contains("line 2") && m.contains("3 fields"), "{m}");
        // gzip from the magic bytes, whatever the name.
        let p = dir.path().join("g.tsv");
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&p).unwrap(),
            flate2::Compression::default(),
        );
        std::io::Write::write_all(&mut enc, b"cell_id\tlocus\tjunction_aa\nc1\tTRB\tCASSF\n")
            .unwrap();
        enc.finish().unwrap();
        let c = read_contigs(&p).unwrap();
        assert_eq!(c.cell(0)[0].locus, Some(Locus::Trb));
    }
}
