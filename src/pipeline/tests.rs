//! Each stage on a small simulated sample (400 barcodes x 1,500 genes with a CAR feature),
//! checked against what the stage must compute, independently of the end-to-end goldens.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::data::{ChunkCtx, FilteredMatrix};
use super::filter::{self, Filtered};
use super::hvg::{self, Hvgs};
use super::scan::{self, Scanned};
use super::*;
use crate::backend::CpuBackend;
use crate::io::{Column, CountSource, ReadOptions};
use crate::matrix::CsrMatrix;
use crate::pp::hvg::HvgFlavor;
use crate::tl::leiden::LeidenFlavor;
use crate::tl::leidenalg::leidenalg;

/// The fixture file, simulated once per test binary.
fn fixture() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder");
        let opts = crate::simulate::SimOptions {
            cells: 400,
            genes: 1500,
            seed: 3,
            ..Default::default()
        };
        crate::simulate::simulate(&dir.path().join("fixture.h5ad"), &opts).expect("simulate");
        dir
    });
    dir.path().join("fixture.h5ad")
}

fn open() -> CountSource {
    CountSource::open(&fixture(), &ReadOptions::default()).expect("open fixture")
}

fn opts() -> RunOptions {
    RunOptions {
        n_top_genes: 300,
        n_pcs: 20,
        n_neighbors: 10,
        chunk_rows: 97,
        ..RunOptions::default()
    }
}

fn ctx(o: &RunOptions) -> ChunkCtx<'static> {
    ChunkCtx {
        backend: &CpuBackend,
        rows: o.chunk_rows,
        target_sum: o.target_sum,
    }
}

fn scanned(o: &RunOptions, budget: u64) -> Scanned {
    let src = open();
    let car = crate::cart::detect::candidate_indices(&src.var.index, None).expect("candidates");
    scan::read_and_qc(src, &car, o, budget).expect("read + qc")
}

fn filtered(o: &RunOptions, budget: u64) -> Filtered {
    filter::apply(scanned(o, budget), None, o).expect("filter")
}

/// The whole raw matrix, read in one piece.
fn whole() -> CsrMatrix {
    let mut src = open();
    let n = src.n_obs();
    src.read_rows(0..n).expect("read")
}

#[test]
fn read_and_qc_counts_every_cell_and_gene() {
    let o = opts();
    let s = scanned(&o, u64::MAX);
    let m = whole();
    for i in 0..m.n_rows {
        let (idx, val) = m.row(i);
        let nz = val.iter().filter(|&&v| v != 0.0).count() as i32;
        let total: f64 = val.iter().map(|&v| f64::from(v)).sum();
        let mt: f64 = idx
            .iter()
            .zip(val)
            .filter(|&(&j, _)| s.mito[j as usize])
            .map(|(_, &v)| f64::from(v))
            .sum();
        assert_eq!(s.cells.n_genes_by_counts[i], nz, "cell {i}");
        assert_eq!(f64::from(s.cells.total_counts[i]), total, "cell {i}");
        assert_eq!(f64::from(s.cells.total_counts_mt[i]), mt, "cell {i}");
    }
    let mut expressed = vec![0i64; m.n_cols];
    for i in 0..m.n_rows {
        if s.cells.n_genes_by_counts[i] >= o.min_genes as i32 {
            let (idx, val) = m.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                expressed[j as usize] += i64::from(v != 0.0);
            }
        }
    }
    assert_eq!(s.n_cells_per_gene, expressed);
    let counts = s.counts.expect("fits in an unbounded budget");
    assert_eq!(
        counts.nnz() as usize,
        m.data.iter().filter(|&&v| v != 0.0).count()
    );
    assert_eq!(s.car.expect("the simulator adds a CAR").name, "CAR");
}

#[test]
fn read_and_qc_drops_the_counts_over_budget() {
    assert!(scanned(&opts(), 1).counts.is_none());
}

#[test]
fn filter_keeps_exactly_the_cells_and_genes_that_pass() {
    let o = opts();
    let s = scanned(&o, u64::MAX);
    let pass_cells: Vec<usize> = (0..s.cells.n_genes_by_counts.len())
        .filter(|&i| {
            s.cells.n_genes_by_counts[i] >= o.min_genes as i32
                && s.cells.pct_counts_mt[i] < o.max_pct_mt
        })
        .collect();
    let pass_genes = s
        .n_cells_per_gene
        .iter()
        .filter(|&&c| c >= i64::from(o.min_cells))
        .count();
    let f = filter::apply(s, None, &o).expect("filter");
    assert_eq!(f.keep_cells, pass_cells);
    assert!(
        f.keep_cells.len() < 400,
        "the simulator makes low-quality barcodes"
    );
    assert_eq!(f.n_after, (pass_cells.len(), pass_genes));
    assert_eq!(f.obs.len(), pass_cells.len());
    assert_eq!(f.var.len(), pass_genes);
    let Some(Column::I64(n_cells)) = f.var.column("n_cells") else {
        panic!("var n_cells missing");
    };
    assert!(n_cells.iter().all(|&c| c >= i64::from(o.min_cells)));
    let FilteredMatrix::Memory(x) = &f.matrix else {
        panic!("an unbounded budget keeps the matrix in memory");
    };
    assert_eq!((x.n_rows, x.n_cols), f.n_after);
}

#[test]
fn filter_names_the_thresholds_when_too_few_cells_pass() {
    let o = RunOptions {
        min_genes: 100_000,
        ..opts()
    };
    let err = filter::apply(scanned(&o, u64::MAX), None, &o)
        .err()
        .expect("no cell has 100,000 genes");
    assert!(err.to_string().contains("min_genes 100000"), "{err}");
}

/// Every chunk of the filtered, normalised matrix, concatenated.
fn chunks(f: &mut Filtered, o: &RunOptions) -> CsrMatrix {
    let c = ctx(o);
    f.matrix.normalize_log1p(&c);
    let mut all = CsrMatrix::empty(f.n_genes());
    f.matrix
        .for_each_chunk(&c, |x| {
            all.append_rows(x);
            Ok(())
        })
        .expect("chunks");
    all
}

#[test]
fn rereading_the_file_gives_the_in_memory_matrix_bit_for_bit() {
    let o = opts();
    let mut mem = filtered(&o, u64::MAX);
    let mut file = filtered(&o, 1);
    assert!(file.matrix.is_reread() && !mem.matrix.is_reread());
    let (a, b) = (chunks(&mut mem, &o), chunks(&mut file, &o));
    assert_eq!(a.indptr, b.indptr);
    assert_eq!(a.indices, b.indices);
    assert_eq!(a.data, b.data);
    // normalize_total(1e4) + log1p: expm1 of each row sums to the target.
    for i in 0..a.n_rows {
        let s: f64 = a.row(i).1.iter().map(|&v| f64::from(v).exp_m1()).sum();
        assert!((s - 1e4).abs() < 1e4 * 1e-5, "row {i}: {s}");
    }
}

fn hvgs(o: &RunOptions) -> (Filtered, Hvgs) {
    let mut f = filtered(o, u64::MAX);
    let c = ctx(o);
    let on_counts = hvg::on_raw_counts(&mut f, &c, o).expect("seurat_v3");
    f.matrix.normalize_log1p(&c);
    let h = hvg::select(&mut f, on_counts, &c, o).expect("hvg");
    (f, h)
}

fn var_names(h: &Hvgs) -> Vec<&str> {
    h.selection
        .var_columns
        .iter()
        .map(|(n, _)| n.as_str())
        .collect()
}

#[test]
fn each_hvg_flavor_selects_n_top_genes_with_its_own_columns() {
    for (flavor, columns) in [
        (
            HvgFlavor::Seurat,
            &["means", "dispersions", "dispersions_norm"][..],
        ),
        (
            HvgFlavor::CellRanger,
            &["means", "dispersions", "dispersions_norm"][..],
        ),
        (
            HvgFlavor::SeuratV3,
            &[
                "means",
                "variances",
                "variances_norm",
                "highly_variable_rank",
            ][..],
        ),
    ] {
        let o = RunOptions {
            hvg_flavor: flavor,
            ..opts()
        };
        let (f, h) = hvgs(&o);
        let n_hv = h.selection.highly_variable.iter().filter(|&&b| b).count();
        assert_eq!(n_hv, o.n_top_genes, "{flavor:?}");
        assert_eq!(h.columns().len(), n_hv);
        assert_eq!(var_names(&h), columns, "{flavor:?}");
        assert_eq!(h.log_moments.n as usize, f.n_cells());
    }
}

#[test]
fn hvg_cutoffs_replace_n_top_genes_and_an_empty_choice_is_an_error() {
    let column = |h: &Hvgs, name: &str| -> Vec<f64> {
        match &h
            .selection
            .var_columns
            .iter()
            .find(|(n, _)| n == name)
            .expect(name)
            .1
        {
            Column::F64(v) => v.clone(),
            Column::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            _ => panic!("{name}"),
        }
    };
    let cutoffs = crate::pp::hvg::HvgCutoffs::default();
    let o = RunOptions {
        hvg_cutoffs: Some(cutoffs),
        ..opts()
    };
    let (_, h) = hvgs(&o);
    let (means, norm) = (column(&h, "means"), column(&h, "dispersions_norm"));
    // dispersions_norm is stored as f32; the choice was made on f64 values, so compare away
    // from the bounds only.
    let mut checked = 0;
    for j in 0..means.len() {
        if (norm[j] - cutoffs.min_disp).abs() > 1e-5 {
            assert_eq!(
                h.selection.highly_variable[j],
                cutoffs.in_bounds(means[j], norm[j]),
                "{j}"
            );
            checked += 1;
        }
    }
    let n_hv = h.selection.highly_variable.iter().filter(|&&b| b).count();
    assert!(
        checked > 1000 && n_hv > 0 && n_hv != o.n_top_genes,
        "{checked} {n_hv}"
    );
    let none = RunOptions {
        hvg_cutoffs: Some(crate::pp::hvg::HvgCutoffs {
            min_disp: 1e9,
            ..cutoffs
        }),
        ..opts()
    };
    let mut f = filtered(&none, u64::MAX);
    f.matrix.normalize_log1p(&ctx(&none));
    let e = hvg::select(&mut f, None, &ctx(&none), &none)
        .err()
        .expect("no HVG");
    assert!(
        e.to_string().contains("no gene lies within the cut-offs"),
        "{e}"
    );
}

#[test]
fn the_car_competes_for_the_hvgs_unless_kept_out() {
    let o = opts();
    let (f, h) = hvgs(&o);
    let car = f.car_column().expect("CAR kept by filter_genes");
    // The simulated construct is bimodal (CAR+ and CAR- cells): highly variable by default.
    assert!(o.cart.car_in_hvg && h.selection.highly_variable[car]);
    let mut out = opts();
    out.cart.car_in_hvg = false;
    let (_, h) = hvgs(&out);
    assert!(!h.selection.highly_variable[car]);
    let n_hv = h.selection.highly_variable.iter().filter(|&&b| b).count();
    assert_eq!(n_hv, o.n_top_genes, "a replacement takes the CAR's place");
}

#[test]
fn pca_scores_have_the_reported_variances() {
    let o = opts();
    let (mut f, h) = hvgs(&o);
    let scaling = pca::scaling(&h, &o);
    assert!(scaling.std.iter().all(|&s| s > 0.0));
    let clock = Stopwatch::new(Vec::new(), false);
    let p = pca::pca(&mut f, &scaling, &ctx(&o), &o, None, &clock).expect("pca");
    let (n, c) = (f.n_cells(), p.fit.n_comps);
    assert_eq!(c, o.n_pcs);
    assert_eq!(p.x_pca.len(), n * c);
    assert!(p.x_writer.is_none());
    for k in 0..c {
        let col: Vec<f64> = (0..n).map(|i| f64::from(p.x_pca[i * c + k])).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(mean.abs() < 1e-3, "PC{k} mean {mean}");
        let rel = (var - p.fit.variance[k]).abs() / p.fit.variance[k];
        assert!(rel < 1e-5, "PC{k}: variance {var} vs {}", p.fit.variance[k]);
    }
    assert!(p.fit.variance.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn neighbours_cluster_and_embed_every_cell() {
    let o = opts();
    let (mut f, h) = hvgs(&o);
    let scaling = pca::scaling(&h, &o);
    let clock = Stopwatch::new(Vec::new(), false);
    let p = pca::pca(&mut f, &scaling, &ctx(&o), &o, None, &clock).expect("pca");
    let g = neighbors::neighbors(&p, &CpuBackend, &o);
    let n = f.n_cells();
    assert_eq!(g.k, o.n_neighbors);
    // Each cell's k - 1 nearest other cells, sorted by distance, self left out.
    for i in 0..n {
        let span = g.distances.indptr[i] as usize..g.distances.indptr[i + 1] as usize;
        let (idx, d) = (&g.distances.indices[span.clone()], &g.distances.data[span]);
        assert_eq!(idx.len(), g.k - 1, "cell {i}");
        assert!(!idx.contains(&(i as u32)));
        let mut by_index: Vec<(u32, f64)> = idx.iter().copied().zip(d.iter().copied()).collect();
        by_index.sort_by_key(|&(j, _)| j);
        assert!(by_index.windows(2).all(|w| w[0].0 < w[1].0));
    }
    // umap's connectivities are a symmetric fuzzy union.
    let c = &g.connectivities;
    for i in 0..n {
        let (idx, w) = c.row(i);
        for (&j, &v) in idx.iter().zip(w) {
            let (jdx, jw) = c.row(j as usize);
            let back = jdx.iter().position(|&x| x == i as u32).map(|p| jw[p]);
            assert_eq!(back, Some(v), "({i}, {j})");
        }
    }
    let (clusters, params) = embed::cluster(&g, &o);
    assert_eq!(clusters.membership.len(), n);
    assert!(clusters.n_clusters > 1 && clusters.modularity > 0.3);
    assert_eq!(params.n_iterations, 2);
    // scanpy's default flavor on the same graph: leidenalg until stable.
    let la = RunOptions {
        leiden_flavor: LeidenFlavor::Leidenalg,
        ..o.clone()
    };
    let (by_leidenalg, params) = embed::cluster(&g, &la);
    assert_eq!(params.n_iterations, -1);
    assert_eq!(by_leidenalg, leidenalg(&g.connectivities, &params));
    assert_ne!(by_leidenalg.membership, clusters.membership);
    assert!(by_leidenalg.n_clusters > 1 && by_leidenalg.modularity > 0.3);
    let u = embed::embed(&g, &p, &CpuBackend, &o).expect("umap");
    assert_eq!(u.embedding.len(), 2 * n);
    assert!(u.embedding.iter().all(|v| v.is_finite()));
}

#[test]
fn analyse_streams_and_holds_in_memory_alike() {
    let run = |max_memory_mib: u64| {
        let o = RunOptions {
            max_memory_mib,
            ..opts()
        };
        let job = Job {
            opts: &o,
            backend: &CpuBackend,
            progress: false,
            batch_key: None,
            x_out: None,
            vdj: None,
            clone_group: None,
        };
        analyse(open(), &job).expect("analyse")
    };
    let (mem, file) = (run(0), run(1));
    assert!(mem.adata.x.is_some() && file.adata.x.is_none());
    let pca = |a: &Analysis| match &a.adata.obsm[0] {
        (name, crate::io::Dense::F32(x)) if name == "X_pca" => x.clone(),
        _ => panic!("obsm X_pca first"),
    };
    assert_eq!(pca(&mem), pca(&file));
    let stages: Vec<Stage> = mem.summary.stage_seconds.iter().map(|s| s.0).collect();
    assert_eq!(stages, &Stage::plan(true, true, true)[..11]);
}
