//! Running a detector over a corpus, writing NAB's result layout, scoring it.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::scorer::{self, ProfileScore};
use super::{Corpus, Error};
use crate::{Config, Detector};

/// The detector's name in result paths.
pub const DETECTOR: &str = "hypernix";

/// One profile's result.
#[derive(Debug, Clone)]
pub struct ProfileResult {
    /// The profile's name.
    pub profile: &'static str,
    /// Its score.
    pub score: ProfileScore,
}

/// The outcome of [`run`].
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Series scored.
    pub series: usize,
    /// Rows scored.
    pub rows: usize,
    /// One result per profile, in NAB's order.
    pub profiles: Vec<ProfileResult>,
    /// Time spent in [`Detector::step`] over all rows.
    pub detect: Duration,
    /// The largest [`Detector::memory_bytes`] over the series.
    pub bytes_per_series: usize,
}

impl Evaluation {
    /// Mean detector time per row, in nanoseconds.
    pub fn ns_per_point(&self) -> f64 {
        self.detect.as_nanos() as f64 / self.rows.max(1) as f64
    }
}

/// Runs a fresh detector with `config` over each series of `corpus` in time order, writes
/// `<out>/hypernix/<category>/hypernix_<series>.csv` and scores the results. `progress`
/// is called after each series with its key.
pub fn run(
    corpus: &Corpus,
    config: &Config,
    out: &Path,
    mut progress: impl FnMut(&str),
) -> Result<Evaluation, Error> {
    let mut all = Vec::with_capacity(corpus.series.len());
    let mut detect = Duration::ZERO;
    let mut bytes = 0;
    for series in &corpus.series {
        let mut detector = Detector::new(config.clone());
        let started = Instant::now();
        let scores: Vec<f64> = series.values.iter().map(|&v| detector.step(v)).collect();
        detect += started.elapsed();
        bytes = bytes.max(detector.memory_bytes());
        write_result(out, series, &scores)?;
        all.push(scores);
        progress(&series.key());
    }
    let profiles = corpus
        .profiles
        .iter()
        .map(|p| ProfileResult {
            profile: p.name,
            score: scorer::score_corpus(&corpus.series, &all, p),
        })
        .collect();
    Ok(Evaluation {
        series: corpus.series.len(),
        rows: corpus.rows(),
        profiles,
        detect,
        bytes_per_series: bytes,
    })
}

fn write_result(out: &Path, series: &super::Series, scores: &[f64]) -> Result<(), Error> {
    let dir = out.join(DETECTOR).join(&series.category);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(format!("{DETECTOR}_{}.csv", series.name));
    let file = fs::File::create(&path).map_err(io(&path))?;
    let mut w = BufWriter::new(file);
    let mut write = || -> std::io::Result<()> {
        writeln!(w, "timestamp,value,anomaly_score,label")?;
        let mut next = 0;
        for (i, (stamp, value)) in series.timestamps.iter().zip(&series.values).enumerate() {
            while next < series.windows.len() && series.windows[next].1 < i {
                next += 1;
            }
            let label = u8::from(next < series.windows.len() && series.windows[next].0 <= i);
            writeln!(w, "{stamp},{value},{},{label}", scores[i])?;
        }
        w.flush()
    };
    write().map_err(io(&path))
}
