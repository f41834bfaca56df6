//! Criterion benches of the pipeline's kernels, per backend and size, and of whole stages on
//! simulated data: `cargo bench --bench kernels`. Every backend implementing the trait is
//! listed in `backends()` (the GPU one when an adapter opens, lavapipe included); sizes stay
//! moderate so a run takes minutes on two cores. GPU kernels are timed through the trait,
//! whose calls return only once the device has finished and the results are read back, so
//! wall-clock iterations measure what the pipeline pays, transfers included. For the time of
//! the kernels on the device itself see `cartscope bench` (timestamp queries) and
//! benches/README.md.

use std::hint::black_box;

use cartscope::backend::{Backend, CpuBackend, GpuBackend, Transform};
use cartscope::simulate::{SimOptions, simulate};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn backends() -> Vec<Box<dyn Backend>> {
    let mut v: Vec<Box<dyn Backend>> = vec![Box::new(CpuBackend)];
    match GpuBackend::new(true) {
        Ok(g) => {
            eprintln!("GPU: {}", g.device());
            v.push(Box::new(g));
        }
        Err(e) => eprintln!("no GPU backend benches: {e}"),
    }
    v
}

fn counts(cells: usize) -> cartscope::CsrMatrix {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bench.h5ad");
    simulate(
        &p,
        &SimOptions {
            cells,
            genes: 4000,
            seed: 1,
            ..SimOptions::default()
        },
    )
    .unwrap();
    cartscope::io::CountSource::open(&p, &Default::default())
        .unwrap()
        .read_all()
        .unwrap()
}

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernels");
    g.sample_size(10);
    for cells in [2_000usize, 10_000] {
        let m = counts(cells);
        let mut logm = m.clone();
        CpuBackend.normalize_log1p(&mut logm, 1e4);
        let cols: Vec<u32> = (0..2000).collect();
        let (mean, var) = CpuBackend
            .gene_moments(&logm, Transform::Identity)
            .mean_var(1);
        let std: Vec<f64> = var.iter().map(|v| v.sqrt().max(1e-12)).collect();
        let block = CpuBackend.scale_dense(
            &logm.slice_rows(0..cells.min(4096)),
            &cols,
            &mean[..2000],
            &std[..2000],
            Some(10.0),
        );
        let pts: Vec<f32> = (0..cells * 50)
            .map(|k| ((k * 7919) % 1000) as f32 / 100.0)
            .collect();
        for b in backends() {
            let name = b.name();
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/normalize_log1p"), cells),
                &m,
                |bch, m| {
                    bch.iter(|| {
                        let mut x = m.clone();
                        b.normalize_log1p(&mut x, 1e4);
                        black_box(x)
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/gene_moments_expm1"), cells),
                &logm,
                |bch, x| bch.iter(|| black_box(b.gene_moments(x, Transform::Expm1))),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/scale_dense_2000"), cells),
                &logm,
                |bch, x| {
                    bch.iter(|| {
                        black_box(b.scale_dense(
                            &x.slice_rows(0..cells.min(4096)),
                            &cols,
                            &mean,
                            &std,
                            Some(10.0),
                        ))
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/gram_2000"), block.len() / 2000),
                &block,
                |bch, blk| {
                    bch.iter(|| {
                        let (mut gram, mut s) = (vec![0.0; 2000 * 2000], vec![0.0; 2000]);
                        b.gram_accumulate(blk, 2000, &mut gram, &mut s);
                        black_box(gram)
                    })
                },
            );
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/knn_exact_50d_k15"), cells),
                &pts,
                |bch, p| bch.iter(|| black_box(b.knn_exact(p, 50, 15))),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
