//! The stages of a run by name, and the clock that times them: one enum names each stage for
//! the log, the progress bar and `summary.json`.

use std::time::Instant;

use serde::{Serialize, Serializer};

/// A stage of `cartscope run`, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Read the input in chunks; check the values; QC metrics; CAR candidates' counts.
    ReadQc,
    /// filter_cells, filter_genes, the mito filter.
    Filter,
    /// normalize_total + log1p.
    Normalize,
    /// highly_variable_genes (and the CAR kept out of them when asked).
    Hvg,
    /// Gene-set scores and cell calls.
    Cart,
    /// scale's statistics on the highly variable genes.
    Scale,
    /// PCA (Gram accumulation, eigendecomposition, projection).
    Pca,
    /// kNN graph, distances and UMAP connectivities.
    Neighbors,
    /// Leiden clustering.
    Leiden,
    /// UMAP layout.
    Umap,
    /// Marker genes (rank_genes_groups).
    Markers,
    /// Writing result.h5ad and the tables and report.
    Write,
}

impl Stage {
    /// The name in logs, the progress bar and `summary.json`'s `stage_seconds`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::ReadQc => "read+qc",
            Stage::Filter => "filter",
            Stage::Normalize => "normalize+log1p",
            Stage::Hvg => "hvg",
            Stage::Cart => "cart",
            Stage::Scale => "scale",
            Stage::Pca => "pca",
            Stage::Neighbors => "neighbors",
            Stage::Leiden => "leiden",
            Stage::Umap => "umap",
            Stage::Markers => "markers",
            Stage::Write => "write",
        }
    }

    /// The stages a run with these switches goes through, in order.
    pub fn plan(cluster: bool, umap: bool, markers: bool) -> Vec<Stage> {
        use Stage::*;
        let mut plan = vec![ReadQc, Filter, Normalize, Hvg, Cart, Scale, Pca, Neighbors];
        plan.extend(cluster.then_some(Leiden));
        plan.extend(umap.then_some(Umap));
        plan.extend(markers.then_some(Markers));
        plan.push(Write);
        plan
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Stage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// CPU seconds (user + system) this process has used so far, from Linux `/proc/self/stat`
/// (clock ticks of 10 ms); 0 elsewhere. Logged beside wall times: on a busy machine the CPU
/// time of a stage is the steadier measure of its work.
pub(crate) fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit(')').next().unwrap_or("");
    let ticks: f64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// Stage timings, logged at info level, with a progress bar on a terminal.
pub(crate) struct Stopwatch {
    started: Instant,
    last: Instant,
    plan: Vec<Stage>,
    laps: Vec<(Stage, f64)>,
    bar: indicatif::ProgressBar,
}

impl Stopwatch {
    /// Starts the clock for the stages of `plan`; draws a bar when `progress` is set and
    /// stderr is a terminal.
    pub(crate) fn new(plan: Vec<Stage>, progress: bool) -> Self {
        let now = Instant::now();
        let target = if progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(plan.len() as u64), target);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
        {
            bar.set_style(style);
        }
        bar.set_message(plan.first().map_or("", |s| s.name()));
        bar.tick();
        Stopwatch {
            started: now,
            last: now,
            plan,
            laps: Vec::new(),
            bar,
        }
    }

    /// Records that `stage` ended now.
    pub(crate) fn lap(&mut self, stage: Stage) {
        crate::cancel::checkpoint();
        let now = Instant::now();
        let secs = (now - self.last).as_secs_f64();
        tracing::info!("{stage}: {secs:.3} s (process cpu {:.2} s)", cpu_seconds());
        self.laps.push((stage, secs));
        self.last = now;
        self.bar.inc(1);
        let next = self.plan.get(self.laps.len()).map_or("", |s| s.name());
        self.bar.set_message(next);
        self.bar.tick();
    }

    /// Logs a step inside the current stage at debug level.
    pub(crate) fn note(&self, what: &str) {
        tracing::debug!(
            "{what}: {:.3} s (process cpu {:.2} s)",
            self.last.elapsed().as_secs_f64(),
            cpu_seconds()
        );
    }

    /// Seconds since the clock started.
    pub(crate) fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The stages timed so far, with their seconds.
    pub(crate) fn laps(&self) -> &[(Stage, f64)] {
        &self.laps
    }
}

impl Drop for Stopwatch {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_summary_json_keys() {
        let names: Vec<&str> = Stage::plan(true, true, true)
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(
            names,
            [
                "read+qc",
                "filter",
                "normalize+log1p",
                "hvg",
                "cart",
                "scale",
                "pca",
                "neighbors",
                "leiden",
                "umap",
                "markers",
                "write"
            ]
        );
        assert_eq!(
            serde_json::to_string(&Stage::ReadQc).unwrap(),
            "\"read+qc\""
        );
    }

    #[test]
    fn plan_skips_switched_off_stages() {
        let plan = Stage::plan(false, true, true);
        assert!(!plan.contains(&Stage::Leiden) && plan.contains(&Stage::Umap));
        assert_eq!(Stage::plan(false, false, false).len(), 9);
    }
}
