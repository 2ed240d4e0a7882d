//! NAB's scoring, following `nab/sweeper.py`, `nab/optimizer.py` and `Runner.normalize`.
//!
//! 1. Sweep: every row gets a weight. Inside a window of width `w` ending at row `r`, row
//!    `i` weighs `tp * S(-(r - i + 1) / w) / S(-1)`, with `S(x) = 2 sigmoid(-5x) - 1`
//!    (`S(x) = -1` for `x >= 3`). Outside windows it weighs `fp * S(d)`, `d` being the
//!    distance past the preceding window's end over that window's width minus 1, or `3`
//!    before the first window. Rows of the probation (the first `min(floor(0.15 n), 750)`)
//!    are not scored.
//! 2. Threshold: rows flagged at threshold `t` are those scoring `>= t`. Each window
//!    starts at `-fn` and takes the largest weight of its flagged rows (its earliest
//!    detection); flagged rows outside windows add their weight. Thresholds are swept
//!    from the highest score down over all series together, starting at 1.1 (nothing
//!    flagged); the best total wins (the highest threshold among ties).
//! 3. Normalisation: `100 * (score - null) / (perfect - null)`, the null detector (a
//!    constant 0.5) scored the same way and `perfect = tp * number of windows`.

use super::{CostMatrix, Profile, Series};

/// NAB's scaled sigmoid of a relative position.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// Rows at the start of a series of `rows` rows that are not scored.
pub fn probation_length(rows: usize) -> usize {
    ((0.15 * rows as f64).floor()).min(750.0) as usize
}

/// A scorable row: the detector's score, its sweep weight and its window (global id).
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// The detector's anomaly score.
    pub score: f64,
    /// The row's weight under the profile.
    pub weight: f64,
    /// The window holding the row, if any.
    pub window: Option<usize>,
}

/// Appends the scorable rows of one series (windows as inclusive row ranges) to `out`;
/// window ids start at `first_window`.
pub fn sweep(
    scores: &[f64],
    windows: &[(usize, usize)],
    costs: &CostMatrix,
    first_window: usize,
    out: &mut Vec<Point>,
) {
    let max_tp = scaled_sigmoid(-1.0);
    let probation = probation_length(scores.len());
    let mut next = 0;
    let mut current: Option<(usize, usize, f64)> = None; // (id, right index, width)
    let mut previous: Option<(usize, f64)> = None; // (right index, width)
    for (i, &score) in scores.iter().enumerate() {
        if next < windows.len() && windows[next].0 == i {
            let (left, right) = windows[next];
            current = Some((first_window + next, right, (right - left + 1) as f64));
            next += 1;
        }
        let weight = match (current, previous) {
            (Some((_, right, width)), _) => {
                let position = -((right as f64) - (i as f64) + 1.0) / width;
                scaled_sigmoid(position) * costs.tp / max_tp
            }
            (None, None) => scaled_sigmoid(3.0) * costs.fp,
            (None, Some((right, width))) => {
                let past = (i as f64 - right as f64).abs() / (width - 1.0);
                let past = if past.is_finite() { past } else { 3.0 };
                scaled_sigmoid(past) * costs.fp
            }
        };
        if i >= probation {
            out.push(Point {
                score,
                weight,
                window: current.map(|c| c.0),
            });
        }
        if let Some((_, right, width)) = current
            && right == i
        {
            previous = Some((right, width));
            current = None;
        }
    }
}

/// The total score at each threshold, highest threshold first; the first entry is 1.1
/// (nothing flagged). `windows` bounds the window ids; `fn_cost` is the profile's FN weight.
pub fn score_by_threshold(points: &mut [Point], windows: usize, fn_cost: f64) -> Vec<(f64, f64)> {
    points.sort_by(|a, b| b.score.total_cmp(&a.score));
    // Every window with a scorable row starts missed.
    let mut part: Vec<Option<f64>> = vec![None; windows];
    let mut total = 0.0;
    for p in points.iter() {
        if let Some(w) = p.window
            && part[w].is_none()
        {
            part[w] = Some(-fn_cost);
            total -= fn_cost;
        }
    }
    let mut out = Vec::new();
    let mut threshold = 1.1;
    for p in points.iter() {
        if p.score != threshold {
            out.push((threshold, total));
            threshold = p.score;
        }
        match p.window.and_then(|w| part[w].as_mut()) {
            None => total += p.weight,
            Some(slot) => {
                if p.weight > *slot {
                    total += p.weight - *slot;
                    *slot = p.weight;
                }
            }
        }
    }
    out.push((threshold, total));
    out
}

/// The score of one profile over a corpus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileScore {
    /// The optimised threshold.
    pub threshold: f64,
    /// The raw score at that threshold.
    pub raw: f64,
    /// The null detector's raw score.
    pub null: f64,
    /// The perfect detector's raw score.
    pub perfect: f64,
    /// `100 * (raw - null) / (perfect - null)`.
    pub normalized: f64,
}

/// The best `(threshold, raw score)` for `scores` (one vector per series), over all
/// series together.
pub fn optimize(series: &[Series], scores: &[Vec<f64>], costs: &CostMatrix) -> (f64, f64) {
    let mut points = Vec::new();
    let mut windows = 0;
    for (s, sc) in series.iter().zip(scores) {
        sweep(sc, &s.windows, costs, windows, &mut points);
        windows += s.windows.len();
    }
    let mut best = (1.1, f64::NEG_INFINITY);
    for (threshold, total) in score_by_threshold(&mut points, windows, costs.fn_) {
        if total > best.1 {
            best = (threshold, total);
        }
    }
    best
}

/// Scores `scores` (one vector per series, same order) under `profile`.
pub fn score_corpus(series: &[Series], scores: &[Vec<f64>], profile: &Profile) -> ProfileScore {
    let (threshold, raw) = optimize(series, scores, &profile.costs);
    let null_scores: Vec<Vec<f64>> = series.iter().map(|s| vec![0.5; s.values.len()]).collect();
    let (_, null) = optimize(series, &null_scores, &profile.costs);
    let windows: usize = series.iter().map(|s| s.windows.len()).sum();
    let perfect = profile.costs.tp * windows as f64;
    let normalized = if perfect > null {
        100.0 * (raw - null) / (perfect - null)
    } else {
        f64::NAN
    };
    ProfileScore {
        threshold,
        raw,
        null,
        perfect,
        normalized,
    }
}
