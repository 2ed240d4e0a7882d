//! Root-cause ranking: which unit, and which logged event, most likely started an
//! incident, from metric changes, their onset before the incident, their correlation with
//! the alerted series, and events shortly before it.
//!
//! For an incident at `t0` on one series, over the window `[t0 - window, t0]`:
//! 1. each series' baseline is its first third of the window (mean, standard deviation
//!    floored at the series' resolution);
//! 2. its onset is the first point after the baseline from which two of three points lie
//!    more than 3 deviations from the baseline mean; its change is the distance of the
//!    mean after the onset (or of the last third, without onset) in deviations;
//! 3. a series scores `c / (c + 3)` for change `c`, times 1 if its onset is no later than
//!    the alerted series' onset (0.3 if later: an effect, not a cause), times
//!    `0.5 + 0.5 |r|` for its correlation `r` with the alerted series;
//! 4. a unit scores its best series; an event scores a weight by kind, times
//!    `exp(-age / (window / 2))`, times `0.5 + 0.5 ·` its unit's score (0.5 for events
//!    about no unit).

use serde::Serialize;

/// A metric series of one unit (or of the host, `unit` = `None`) around an incident.
#[derive(Debug, Clone)]
pub struct Series {
    /// The unit the series belongs to.
    pub unit: Option<String>,
    /// The metric name.
    pub metric: String,
    /// Points `(time in ms, value)`, oldest first.
    pub points: Vec<(i64, f64)>,
    /// The smallest change that matters, in the series' unit.
    pub resolution: f64,
}

/// A logged event that may explain an incident.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The event's id.
    pub id: u64,
    /// When it happened, in ms.
    pub at_ms: i64,
    /// Its kind, such as `config.applied`.
    pub kind: String,
    /// The unit it is about.
    pub unit: Option<String>,
}

/// What is being explained: a series of a unit at a time.
#[derive(Debug, Clone)]
pub struct Incident {
    /// The unit alerted on.
    pub unit: Option<String>,
    /// The alerted metric.
    pub metric: String,
    /// When the alert fired, in ms.
    pub at_ms: i64,
    /// How far back to look, in ms.
    pub window_ms: i64,
}

/// A ranked candidate cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cause {
    /// `unit` or `event`.
    pub kind: String,
    /// The unit's name, or the event's kind and id (`config.applied#42`).
    pub name: String,
    /// Between 0 and 1; higher is likelier.
    pub score: f64,
    /// Why, in words.
    pub explanation: String,
}

/// How a series changed in the window.
#[derive(Debug, Clone, Copy)]
struct Change {
    onset_ms: Option<i64>,
    before: f64,
    after: f64,
    sigmas: f64,
}

/// Candidates ranked best first: every unit with series, then every event in the window.
pub fn rank(incident: &Incident, series: &[Series], events: &[Candidate]) -> Vec<Cause> {
    let from = incident.at_ms - incident.window_ms.max(1);
    let window: Vec<Series> = series
        .iter()
        .map(|s| Series {
            points: s
                .points
                .iter()
                .copied()
                .filter(|&(t, v)| t >= from && t <= incident.at_ms && v.is_finite())
                .collect(),
            ..s.clone()
        })
        .collect();
    let alerted = window
        .iter()
        .find(|s| s.unit == incident.unit && s.metric == incident.metric);
    let alerted_onset = alerted
        .and_then(change)
        .and_then(|c| c.onset_ms)
        .unwrap_or(incident.at_ms);

    let mut units: Vec<(Option<String>, f64, String)> = Vec::new();
    for s in &window {
        let Some(c) = change(s) else { continue };
        let precedence = match c.onset_ms {
            Some(t) if t > alerted_onset => 0.3,
            _ => 1.0,
        };
        let r = alerted.map_or(0.0, |a| correlation(&s.points, &a.points));
        let score = c.sigmas / (c.sigmas + 3.0) * precedence * (0.5 + 0.5 * r.abs());
        let explanation = describe(s, &c, incident.at_ms, r);
        match units.iter_mut().find(|(u, _, _)| *u == s.unit) {
            Some(entry) if entry.1 >= score => {}
            Some(entry) => *entry = (s.unit.clone(), score, explanation),
            None => units.push((s.unit.clone(), score, explanation)),
        }
    }
    let mut causes: Vec<Cause> = units
        .iter()
        .map(|(u, score, explanation)| Cause {
            kind: "unit".into(),
            name: u.clone().unwrap_or_else(|| "host".into()),
            score: *score,
            explanation: explanation.clone(),
        })
        .collect();
    for e in events
        .iter()
        .filter(|e| e.at_ms >= from && e.at_ms <= incident.at_ms)
    {
        let age = (incident.at_ms - e.at_ms) as f64;
        let unit_factor = match &e.unit {
            Some(u) => {
                0.5 + 0.5
                    * units
                        .iter()
                        .find(|(n, _, _)| n.as_deref() == Some(u))
                        .map_or(0.0, |x| x.1)
            }
            None => 0.5,
        };
        let score =
            weight(&e.kind) * (-age / (incident.window_ms as f64 / 2.0)).exp() * unit_factor;
        let about = e
            .unit
            .as_deref()
            .map(|u| format!(" on unit {u}"))
            .unwrap_or_default();
        causes.push(Cause {
            kind: "event".into(),
            name: format!("{}#{}", e.kind, e.id),
            score,
            explanation: format!("{}{about}, {:.0} s before the alert", e.kind, age / 1000.0),
        });
    }
    causes.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.name.cmp(&b.name))
    });
    causes
}

/// How telling an event of `kind` is as a cause.
fn weight(kind: &str) -> f64 {
    match kind.split('.').next().unwrap_or("") {
        "config" | "migration" => 0.8,
        "unit" => 0.7,
        "backup" => 0.6,
        "storage" => 0.3,
        _ => 0.2,
    }
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The change of a series in its window; `None` with fewer than 6 points.
fn change(s: &Series) -> Option<Change> {
    let n = s.points.len();
    if n < 6 {
        return None;
    }
    let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
    let base_end = n / 3;
    let (before, sd) = mean_sd(&values[..base_end]);
    let sd = sd.max(s.resolution).max(f64::MIN_POSITIVE);
    let off = |v: f64| (v - before).abs() > 3.0 * sd;
    let onset = (base_end..n).find(|&i| {
        let next: Vec<bool> = values[i..(i + 3).min(n)].iter().map(|&v| off(v)).collect();
        off(values[i]) && next.iter().filter(|&&o| o).count() * 3 >= next.len() * 2
    });
    let after_from = onset.unwrap_or(n - n / 3);
    let (after, _) = mean_sd(&values[after_from..]);
    Some(Change {
        onset_ms: onset.map(|i| s.points[i].0),
        before,
        after,
        sigmas: (after - before).abs() / sd,
    })
}

/// Pearson's correlation of two series over the times both have (0 when undefined).
fn correlation(a: &[(i64, f64)], b: &[(i64, f64)]) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .filter_map(|&(t, x)| {
            b.binary_search_by_key(&t, |p| p.0)
                .ok()
                .map(|i| (x, b[i].1))
        })
        .collect();
    if pairs.len() < 3 {
        return 0.0;
    }
    let (xs, ys): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    let (mx, sx) = mean_sd(&xs);
    let (my, sy) = mean_sd(&ys);
    if sx == 0.0 || sy == 0.0 {
        return 0.0;
    }
    let cov = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| (x - mx) * (y - my))
        .sum::<f64>()
        / xs.len() as f64;
    (cov / (sx * sy)).clamp(-1.0, 1.0)
}

fn describe(s: &Series, c: &Change, at_ms: i64, r: f64) -> String {
    let dir = if c.after >= c.before { "rose" } else { "fell" };
    let when = match c.onset_ms {
        Some(t) => format!(
            ", starting {:.0} s before the alert",
            (at_ms - t) as f64 / 1000.0
        ),
        None => String::new(),
    };
    format!(
        "{} {dir} from {} to {} ({:.1} deviations){when}; correlation {r:.2} with the alerted series",
        s.metric,
        short(c.before),
        short(c.after),
        c.sigmas
    )
}

fn short(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.3e}", v)
    } else {
        format!("{:.3}", v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(unit: &str, f: impl Fn(i64) -> f64) -> Series {
        Series {
            unit: Some(unit.into()),
            metric: "cpu".into(),
            points: (0..120).map(|t| (t * 1000, f(t))).collect(),
            resolution: 0.05,
        }
    }

    fn noise(t: i64) -> f64 {
        0.02 + 0.01 * ((t * 7919 % 13) as f64 / 13.0)
    }

    fn incident(unit: &str) -> Incident {
        Incident {
            unit: Some(unit.into()),
            metric: "cpu".into(),
            at_ms: 119_000,
            window_ms: 120_000,
        }
    }

    #[test]
    fn the_unit_that_changed_first_ranks_first() {
        let burner = series("burner", |t| if t >= 100 { 1.0 } else { noise(t) });
        let quiet = series("quiet", noise);
        let victim = series("victim", |t| if t >= 104 { 0.5 } else { noise(t) });
        let causes = rank(&incident("victim"), &[quiet, victim, burner], &[]);
        assert_eq!(causes[0].name, "burner", "{causes:#?}");
        assert_eq!(causes[1].name, "victim");
        assert!(causes[2].score < 0.2, "{causes:#?}");
        assert!(
            causes[0].explanation.contains("rose from 0.02"),
            "{}",
            causes[0].explanation
        );
    }

    #[test]
    fn an_event_just_before_counts_more_than_an_old_one() {
        let s = series("a", |t| if t >= 100 { 1.0 } else { noise(t) });
        let ev = |id, at_ms, kind: &str| Candidate {
            id,
            at_ms,
            kind: kind.into(),
            unit: Some("a".into()),
        };
        let events = [
            ev(1, 10_000, "config.applied"),
            ev(2, 98_000, "config.applied"),
            ev(3, 200_000, "unit.started"),
        ];
        let causes = rank(&incident("a"), &[s], &events);
        let pos = |n: &str| causes.iter().position(|c| c.name == n);
        assert!(pos("config.applied#2") < pos("config.applied#1"));
        assert_eq!(
            pos("unit.started#3"),
            None,
            "events after the alert are not causes"
        );
    }

    #[test]
    fn short_empty_or_non_finite_series_do_not_panic() {
        let mut s = series("a", |_| f64::NAN);
        s.points.truncate(3);
        let flat = series("b", |_| 1.0);
        let causes = rank(&incident("a"), &[s, flat], &[]);
        assert!(causes.iter().all(|c| c.score.is_finite()));
        assert!(rank(&incident("a"), &[], &[]).is_empty());
    }
}
