//! Forecasts of a series with augurs, their accuracy (MASE), and rolling-origin backtests.
//!
//! 1. [`forecast`] fits MSTL (one seasonal period, its trend forecast by AutoETS) when a
//!    season of at least 2 is given and the history holds at least two seasons; otherwise
//!    non-seasonal AutoETS. It forecasts `horizon` points with 95 % prediction intervals.
//! 2. [`mase`] scores a forecast as Hyndman's mean absolute scaled error: its mean
//!    absolute error over the in-sample mean absolute error of the seasonal naive forecast.
//! 3. [`backtest`] forecasts from several origins at the end of a series, each seeing only
//!    the points before it, and compares the model's mean MASE with the naive forecast's.

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_mstl::MSTLModel;
use serde::Serialize;

/// The level of the prediction intervals.
pub const LEVEL: f64 = 0.95;

/// The shortest history [`forecast`] accepts.
pub const MIN_HISTORY: usize = 10;

/// The longest horizon [`forecast`] accepts, in points.
pub const MAX_HORIZON: usize = 100_000;

/// A forecast: point predictions and their 95 % prediction intervals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The predicted values, one per step after the history.
    pub point: Vec<f64>,
    /// Lower bounds of the 95 % intervals.
    pub lower: Vec<f64>,
    /// Upper bounds of the 95 % intervals.
    pub upper: Vec<f64>,
}

/// The outcome of a [`backtest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backtest {
    /// Origins scored (origins whose history never changes have no MASE and are left out).
    pub origins: usize,
    /// The model's mean MASE over those origins.
    pub model_mase: f64,
    /// The naive forecast's (last value repeated) mean MASE over the same origins.
    pub naive_mase: f64,
}

/// Why a forecast could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ForecastError {
    /// Not enough history.
    #[error("{have} points of history are too few to forecast; give at least {need}")]
    TooShort {
        /// Points given.
        have: usize,
        /// Points needed.
        need: usize,
    },
    /// A history value is NaN or infinite.
    #[error("history point {index} is {value}; forecasts need finite values (drop or fill it)")]
    NotFinite {
        /// Its index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// The horizon is 0 or too long.
    #[error("a horizon of {0} points is out of range; ask for 1 to {MAX_HORIZON}")]
    Horizon(usize),
    /// Zero origins were asked of a backtest.
    #[error("a backtest needs at least one origin")]
    NoOrigins,
    /// The model failed to fit or predict.
    #[error("{model} failed: {reason}")]
    Model {
        /// The model, e.g. `MSTL+AutoETS`.
        model: &'static str,
        /// augurs' error.
        reason: String,
    },
    /// MASE is undefined at every origin of a backtest.
    #[error("MASE is undefined at every origin (the history never changes): nothing to score")]
    Unscorable,
    /// The step between points is not positive.
    #[error("the step is {0} ms; give a positive step")]
    Step(i64),
    /// Timestamps go backwards.
    #[error("history goes back in time at {at_ms} ms (after {previous_ms} ms); sort it")]
    Unordered {
        /// The offending timestamp.
        at_ms: i64,
        /// The timestamp before it.
        previous_ms: i64,
    },
    /// Too many points are missing in a row to fill.
    #[error("{missing} steps are missing before {at_ms} ms; at most {max} are filled")]
    Gap {
        /// The timestamp after the gap.
        at_ms: i64,
        /// Steps missing.
        missing: i64,
        /// The most that are filled.
        max: i64,
    },
}

/// Forecasts `horizon` points after `history` (evenly spaced, oldest first); `season` is
/// the seasonal period in points (e.g. 288 for a daily season of 5-minute points).
pub fn forecast(
    history: &[f64],
    horizon: usize,
    season: Option<usize>,
) -> Result<Forecast, ForecastError> {
    if horizon == 0 || horizon > MAX_HORIZON {
        return Err(ForecastError::Horizon(horizon));
    }
    if history.len() < MIN_HISTORY {
        return Err(ForecastError::TooShort {
            have: history.len(),
            need: MIN_HISTORY,
        });
    }
    if let Some((index, &value)) = history.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ForecastError::NotFinite { index, value });
    }
    let (model, result) = match season {
        Some(s) if s >= 2 && history.len() / 2 >= s => {
            let trend = AutoETS::non_seasonal().into_trend_model();
            let fitted = MSTLModel::new(vec![s], trend).fit(history);
            let out = fitted.and_then(|f| f.predict(horizon, LEVEL));
            ("MSTL+AutoETS", out.map_err(|e| e.to_string()))
        }
        _ => {
            let fitted = AutoETS::non_seasonal().fit(history);
            let out = fitted.and_then(|f| f.predict(horizon, LEVEL));
            ("AutoETS", out.map_err(|e| e.to_string()))
        }
    };
    let failed = |reason: String| ForecastError::Model { model, reason };
    let out = result.map_err(failed)?;
    let intervals = out
        .intervals
        .ok_or_else(|| failed("no prediction intervals".into()))?;
    let all = [&out.point, &intervals.lower, &intervals.upper];
    if all.iter().any(|v| v.len() != horizon) {
        return Err(failed(format!(
            "{} points for a horizon of {horizon}",
            out.point.len()
        )));
    }
    if all.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
        return Err(failed("non-finite forecast".into()));
    }
    Ok(Forecast {
        point: out.point,
        lower: intervals.lower,
        upper: intervals.upper,
    })
}

/// Hyndman's MASE of `predicted` against `actual`: the mean absolute error over the
/// in-sample mean absolute error of the seasonal naive forecast (`y[t] = y[t - season]`;
/// season 1 is the naive forecast) on `history`. `None` when the lengths differ, nothing
/// is predicted, the history is not longer than a season, or its naive error is 0.
pub fn mase(actual: &[f64], predicted: &[f64], history: &[f64], season: usize) -> Option<f64> {
    if actual.is_empty() || actual.len() != predicted.len() || season == 0 {
        return None;
    }
    if history.len() <= season {
        return None;
    }
    let naive = history.iter().skip(season).zip(history);
    let scale =
        naive.map(|(y, lag)| (y - lag).abs()).sum::<f64>() / (history.len() - season) as f64;
    let mae = actual
        .iter()
        .zip(predicted)
        .map(|(a, p)| (a - p).abs())
        .sum::<f64>()
        / actual.len() as f64;
    let value = mae / scale;
    (scale > 0.0 && value.is_finite()).then_some(value)
}

/// Rolling-origin backtest over the last `origins × horizon` points of `series`: origin
/// `k` forecasts `horizon` points from the points before it, and is scored with [`mase`]
/// (seasonal naive scale for `season`, else naive) beside the naive forecast.
pub fn backtest(
    series: &[f64],
    horizon: usize,
    season: Option<usize>,
    origins: usize,
) -> Result<Backtest, ForecastError> {
    if origins == 0 {
        return Err(ForecastError::NoOrigins);
    }
    if horizon == 0 || horizon > MAX_HORIZON {
        return Err(ForecastError::Horizon(horizon));
    }
    let lag = season.unwrap_or(1).max(1);
    let tested = horizon.saturating_mul(origins);
    let need = tested.saturating_add(MIN_HISTORY.max(lag.saturating_add(1)));
    if series.len() < need {
        return Err(ForecastError::TooShort {
            have: series.len(),
            need,
        });
    }
    let (mut model, mut naive, mut scored) = (0.0, 0.0, 0);
    for k in 0..origins {
        let origin = series.len() - tested + k * horizon;
        let (past, actual) = (&series[..origin], &series[origin..origin + horizon]);
        let predicted = forecast(past, horizon, season)?.point;
        let last = vec![past[origin - 1]; horizon];
        if let (Some(m), Some(n)) = (
            mase(actual, &predicted, past, lag),
            mase(actual, &last, past, lag),
        ) {
            model += m;
            naive += n;
            scored += 1;
        }
    }
    if scored == 0 {
        return Err(ForecastError::Unscorable);
    }
    Ok(Backtest {
        origins: scored,
        model_mase: model / scored as f64,
        naive_mase: naive / scored as f64,
    })
}
