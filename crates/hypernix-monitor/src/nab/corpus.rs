//! Reading and validating a NAB directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use serde::Deserialize;

use super::Error;

/// The profiles NAB reports, in its order.
pub const PROFILES: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

/// One series with its labelled windows.
#[derive(Debug, Clone)]
pub struct Series {
    /// The category directory, e.g. `realKnownCause`.
    pub category: String,
    /// The file stem, e.g. `nyc_taxi`.
    pub name: String,
    /// Timestamps as written in the file.
    pub timestamps: Vec<String>,
    /// The values.
    pub values: Vec<f64>,
    /// Windows as inclusive row ranges `(first, last)`, in time order.
    pub windows: Vec<(usize, usize)>,
}

impl Series {
    /// `<category>/<name>.csv`, the key of `combined_windows.json`.
    pub fn key(&self) -> String {
        format!("{}/{}.csv", self.category, self.name)
    }

    /// Whether row `i` lies in a window.
    pub fn in_window(&self, i: usize) -> bool {
        self.windows.iter().any(|&(a, b)| a <= i && i <= b)
    }
}

/// The weights of one profile.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct CostMatrix {
    /// Weight of a detected window.
    #[serde(rename = "tpWeight")]
    pub tp: f64,
    /// Weight of a false positive.
    #[serde(rename = "fpWeight")]
    pub fp: f64,
    /// Cost of a missed window.
    #[serde(rename = "fnWeight")]
    pub fn_: f64,
}

/// A named scoring profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The name, e.g. `standard`.
    pub name: &'static str,
    /// Its weights.
    pub costs: CostMatrix,
}

#[derive(Deserialize)]
struct RawProfile {
    #[serde(rename = "CostMatrix")]
    cost_matrix: CostMatrix,
}

/// A loaded NAB directory.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The series, sorted by key.
    pub series: Vec<Series>,
    /// The three profiles, in NAB's order.
    pub profiles: Vec<Profile>,
}

impl Corpus {
    /// Reads `dir/data/*/*.csv`, `dir/combined_windows.json` and `dir/profiles.json`.
    pub fn load(dir: &Path) -> Result<Corpus, Error> {
        let windows: BTreeMap<String, Vec<[String; 2]>> =
            read_json(&dir.join("combined_windows.json"))?;
        let raw: BTreeMap<String, RawProfile> = read_json(&dir.join("profiles.json"))?;
        let profiles = PROFILES
            .iter()
            .map(|&name| {
                raw.get(name)
                    .map(|p| Profile {
                        name,
                        costs: p.cost_matrix,
                    })
                    .ok_or(Error::NoProfile(name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let data = dir.join("data");
        let mut series = Vec::new();
        for category in sorted_entries(&data)? {
            if !category.is_dir() {
                continue;
            }
            for file in sorted_entries(&category)? {
                if file.extension().and_then(|e| e.to_str()) != Some("csv") {
                    continue;
                }
                series.push(read_series(&category, &file, &windows)?);
            }
        }
        if series.is_empty() {
            return Err(Error::Empty(data));
        }
        Ok(Corpus { series, profiles })
    }

    /// Rows over all series.
    pub fn rows(&self) -> usize {
        self.series.iter().map(|s| s.values.len()).sum()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        out.push(entry.map_err(io(dir))?.path());
    }
    out.sort();
    Ok(out)
}

fn parse_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()
}

fn read_series(
    category: &Path,
    file: &Path,
    windows: &BTreeMap<String, Vec<[String; 2]>>,
) -> Result<Series, Error> {
    let name_of = |p: &Path| {
        p.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let category_name = category
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let name = name_of(file);
    let Rows {
        timestamps,
        times,
        values,
    } = read_rows(file)?;
    let key = format!("{category_name}/{name}.csv");
    let labelled = windows
        .get(&key)
        .ok_or_else(|| Error::NoWindows(key.clone()))?;
    let mut rows = Vec::with_capacity(labelled.len());
    for [start, end] in labelled {
        let window = |reason| Error::Window {
            series: key.clone(),
            start: start.clone(),
            end: end.clone(),
            reason,
        };
        let (a, b) = match (parse_time(start), parse_time(end)) {
            (Some(a), Some(b)) if a <= b => (a, b),
            _ => return Err(window("has a bad timestamp or ends before it starts")),
        };
        // As NAB: the first rows whose timestamps equal the window's bounds.
        let (Some(first), Some(last)) = (
            times.iter().position(|&t| t == a),
            times.iter().position(|&t| t == b),
        ) else {
            return Err(window("does not start and end on timestamps of the series"));
        };
        if last < first
            || rows
                .last()
                .is_some_and(|&(_, prev_last)| first <= prev_last)
        {
            return Err(window("overlaps or precedes the previous window"));
        }
        rows.push((first, last));
    }
    Ok(Series {
        category: category_name,
        name,
        timestamps,
        values,
        windows: rows,
    })
}

/// The rows of a `timestamp,value` file.
struct Rows {
    timestamps: Vec<String>,
    times: Vec<NaiveDateTime>,
    values: Vec<f64>,
}

/// Reads a `timestamp,value` CSV file in NAB's format (`YYYY-MM-DD HH:MM:SS`, UTC, one row
/// per line, finite values) as `(milliseconds since the epoch, value)` rows in file order.
pub fn read_csv(file: &Path) -> Result<Vec<(i64, f64)>, Error> {
    let rows = read_rows(file)?;
    let times = rows.times.iter().map(|t| t.and_utc().timestamp_millis());
    Ok(times.zip(rows.values).collect())
}

fn read_rows(file: &Path) -> Result<Rows, Error> {
    let text = fs::read_to_string(file).map_err(io(file))?;
    let csv = |line: usize, reason: String| Error::Csv {
        path: file.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "timestamp,value" => {}
        _ => return Err(csv(1, "expected the header \"timestamp,value\"".into())),
    }
    let (mut timestamps, mut times, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let (stamp, value) = line
            .split_once(',')
            .ok_or_else(|| csv(n + 1, format!("expected timestamp,value, got {line:?}")))?;
        let time =
            parse_time(stamp).ok_or_else(|| csv(n + 1, format!("bad timestamp {stamp:?}")))?;
        let value: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| csv(n + 1, format!("bad value {value:?}")))?;
        timestamps.push(stamp.to_string());
        times.push(time);
        values.push(value);
    }
    if values.is_empty() {
        return Err(csv(2, "no rows".into()));
    }
    Ok(Rows {
        timestamps,
        times,
        values,
    })
}
