//! Criterion benches of Leiden and UMAP on kNN graphs of a Gaussian mixture (12 groups in 20
//! dimensions, exact 15-NN, umap connectivities, as the pipeline builds them):
//! `cargo bench --bench cluster`. The whole-run comparison with scanpy is
//! benches/compare_scanpy.sh.

use std::hint::black_box;

use cartscope::backend::umap_sgd::{Graph, SgdGraph, SgdParams, optimize_layout};
use cartscope::backend::{Backend, CpuBackend};
use cartscope::tl::leiden::{LeidenParams, leiden};
use cartscope::tl::neighbors::connectivities;
use cartscope::tl::umap::{UmapParams, find_ab_params, umap};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const DIM: usize = 20;

/// `n` points of a 12-group Gaussian mixture and their connectivities.
fn graph(n: usize) -> (Vec<f32>, cartscope::CsrMatrix) {
    let mut state = 7u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 / (1u64 << 53) as f64).max(1e-12)
    };
    let centres: Vec<f64> = (0..12 * DIM).map(|_| 8.0 * uniform()).collect();
    let mut pts = Vec::with_capacity(n * DIM);
    for i in 0..n {
        let c = i % 12;
        for d in 0..DIM {
            // Box-Muller.
            let z = (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
            pts.push((centres[c * DIM + d] + z) as f32);
        }
    }
    let (idx, dist) = CpuBackend.knn_exact(&pts, DIM, 15);
    (pts, connectivities(&idx, &dist, 15))
}

fn cluster(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster");
    g.sample_size(10);
    for n in [2_000usize, 30_000] {
        let (pts, conn) = graph(n);
        g.bench_with_input(BenchmarkId::new("leiden", n), &conn, |b, conn| {
            b.iter(|| black_box(leiden(conn, &LeidenParams::default())))
        });
        if n <= 2_000 {
            g.bench_with_input(BenchmarkId::new("umap", n), &conn, |b, conn| {
                b.iter(|| black_box(umap(conn, Some((&pts, DIM)), &UmapParams::default())))
            });
        }
        // Ten SGD epochs of the full schedule (the layout stage is n_epochs / 10 of these).
        let (a, bb) = find_ab_params(1.0, 0.5);
        let sgd = SgdGraph::new(&Graph {
            indptr: conn.indptr.iter().map(|&p| p as usize).collect(),
            indices: conn.indices.clone(),
            weights: conn.data.iter().map(|&w| f64::from(w)).collect(),
        });
        let p = SgdParams {
            a: a as f32,
            b: bb as f32,
            gamma: 1.0,
            negative_sample_rate: 5.0,
            learning_rate: 1.0,
            n_epochs: 10,
            seed: 0,
        };
        let init: Vec<f32> = (0..n * 2)
            .map(|k| ((k * 7919) % 1000) as f32 / 100.0)
            .collect();
        g.bench_with_input(BenchmarkId::new("umap_10_epochs", n), &sgd, |b, sgd| {
            b.iter(|| {
                let mut e = init.clone();
                optimize_layout(sgd, &mut e, 2, &p);
                black_box(e)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, cluster);
criterion_main!(benches);
