//! Capacity: when a forecast of a metric first reaches a limit.

use serde::Serialize;

use crate::forecast::{self, ForecastError};

/// The most missing steps in a row that [`crossing`] fills.
pub const MAX_GAP: i64 = 12;

/// The first forecast point at or above the limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Crossing {
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The forecast value there.
    pub value: f64,
}

/// Forecasts `history` (`(at_ms, value)`, oldest first, one point per `step_ms`) up to
/// `horizon_ms` past its last point and returns the first forecast point `>= limit`, or
/// `None` if none is within the horizon.
///
/// Timestamps are placed on the grid of the first one (rounded to the nearest step; a
/// later point in the same step replaces an earlier one). Gaps of up to [`MAX_GAP`]
/// steps are filled by carrying the last value forward; longer gaps are an error.
pub fn crossing(
    history: &[(i64, f64)],
    step_ms: i64,
    limit: f64,
    horizon_ms: i64,
) -> Result<Option<Crossing>, ForecastError> {
    if step_ms <= 0 {
        return Err(ForecastError::Step(step_ms));
    }
    let (last_at, values) = regular(history, step_ms)?;
    let steps = horizon_ms.max(0) / step_ms;
    if steps == 0 {
        return Ok(None);
    }
    // Beyond MAX_HORIZON the forecast refuses it.
    let steps = usize::try_from(steps).unwrap_or(usize::MAX);
    let f = forecast::forecast(&values, steps, None)?;
    Ok(f.point.iter().zip(1i64..).find_map(|(&value, i)| {
        (value >= limit).then(|| Crossing {
            at_ms: last_at.saturating_add(i.saturating_mul(step_ms)),
            value,
        })
    }))
}

/// The values on a regular grid of `step` from the first timestamp, and the time of the
/// last grid point.
fn regular(history: &[(i64, f64)], step: i64) -> Result<(i64, Vec<f64>), ForecastError> {
    let Some(&(first, _)) = history.first() else {
        return Err(ForecastError::TooShort {
            have: 0,
            need: forecast::MIN_HISTORY,
        });
    };
    let step128 = i128::from(step);
    let mut values: Vec<f64> = Vec::with_capacity(history.len());
    let (mut slot, mut previous) = (0i128, first);
    for (index, &(at, value)) in history.iter().enumerate() {
        if !value.is_finite() {
            return Err(ForecastError::NotFinite { index, value });
        }
        if at < previous {
            return Err(ForecastError::Unordered {
                at_ms: at,
                previous_ms: previous,
            });
        }
        previous = at;
        let here = (i128::from(at) - i128::from(first) + step128 / 2).div_euclid(step128);
        match values.last().copied() {
            Some(_) if here == slot => {
                if let Some(v) = values.last_mut() {
                    *v = value;
                }
            }
            Some(carried) => {
                let missing = here - slot - 1;
                if missing > i128::from(MAX_GAP) {
                    return Err(ForecastError::Gap {
                        at_ms: at,
                        missing: i64::try_from(missing).unwrap_or(i64::MAX),
                        max: MAX_GAP,
                    });
                }
                values.extend(std::iter::repeat_n(carried, missing as usize));
                values.push(value);
                slot = here;
            }
            None => values.push(value),
        }
    }
    let last_at = i128::from(first) + slot * step128;
    Ok((i64::try_from(last_at).unwrap_or(i64::MAX), values))
}
