//! Forecasts, MASE, backtests and capacity crossings on series with known answers.

use hypernix_monitor::capacity::{self, Crossing};
use hypernix_monitor::forecast::{ForecastError, backtest, forecast, mase};

/// A daily-like season of `period` points on a slow trend, with a little fixed noise.
fn seasonal(n: usize, period: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let phase = i as f64 / period as f64 * std::f64::consts::TAU;
            let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
            50.0 + 0.01 * i as f64 + 20.0 * phase.sin() + noise
        })
        .collect()
}

#[test]
fn seasonal_forecast_follows_the_season() {
    let series = seasonal(24 * 12 + 12, 24);
    let (past, future) = series.split_at(24 * 12);
    let f = forecast(past, 12, Some(24)).unwrap();
    assert_eq!((f.point.len(), f.lower.len(), f.upper.len()), (12, 12, 12));
    for (i, truth) in future.iter().enumerate() {
        assert!(
            (f.point[i] - truth).abs() < 2.0,
            "{i}: {} vs {truth}",
            f.point[i]
        );
        assert!(
            f.lower[i] <= f.point[i] && f.point[i] <= f.upper[i],
            "{f:?}"
        );
    }
}

#[test]
fn trend_forecast_continues_a_ramp() {
    let ramp: Vec<f64> = (0..100).map(|i| 3.0 * i as f64).collect();
    // A season longer than half the history falls back to non-seasonal AutoETS.
    for season in [None, Some(60)] {
        let f = forecast(&ramp, 5, season).unwrap();
        for (i, p) in f.point.iter().enumerate() {
            let truth = 3.0 * (100 + i) as f64;
            assert!((p - truth).abs() < 1.0, "{season:?} {i}: {p} vs {truth}");
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let short = [1.0; 5];
    assert_eq!(
        forecast(&short, 3, None),
        Err(ForecastError::TooShort { have: 5, need: 10 })
    );
    let mut nan = vec![1.0; 20];
    nan[7] = f64::NAN;
    let e = forecast(&nan, 3, None).unwrap_err();
    assert!(
        matches!(e, ForecastError::NotFinite { index: 7, .. }),
        "{e}"
    );
    assert_eq!(
        forecast(&[1.0; 20], 0, None),
        Err(ForecastError::Horizon(0))
    );
    assert_eq!(
        backtest(&[1.0; 20], 12, None, 0),
        Err(ForecastError::NoOrigins)
    );
    let e = backtest(&seasonal(100, 24), 12, Some(24), 8).unwrap_err();
    assert_eq!(
        e,
        ForecastError::TooShort {
            have: 100,
            need: 121
        }
    );
    assert!(e.to_string().contains("at least 121"), "{e}");
    // An absurd season is refused, not an overflow.
    let e = backtest(&seasonal(100, 24), 12, Some(usize::MAX), 1).unwrap_err();
    assert!(
        matches!(e, ForecastError::TooShort { have: 100, .. }),
        "{e}"
    );
    assert!(forecast(&seasonal(100, 24), 3, Some(usize::MAX)).is_ok());
}

#[test]
fn mase_follows_hyndman() {
    let history = [1.0, 2.0, 3.0, 4.0];
    // Naive in-sample error 1; forecast errors 1 and 2.
    assert_eq!(mase(&[5.0, 6.0], &[4.0, 4.0], &history, 1), Some(1.5));
    // Seasonal naive (lag 2) in-sample error 2.
    assert_eq!(mase(&[5.0, 6.0], &[4.0, 4.0], &history, 2), Some(0.75));
    assert_eq!(mase(&[5.0], &[4.0, 4.0], &history, 1), None);
    assert_eq!(mase(&[], &[], &history, 1), None);
    assert_eq!(mase(&[5.0], &[4.0], &history, 4), None);
    assert_eq!(mase(&[5.0], &[4.0], &[2.0; 6], 1), None);
}

#[test]
fn backtest_beats_naive_on_a_seasonal_series() {
    let series = seasonal(24 * 20, 24);
    let b = backtest(&series, 12, Some(24), 4).unwrap();
    assert_eq!(b.origins, 4);
    assert!(b.model_mase < 0.5 * b.naive_mase, "{b:?}");
    assert!(b.naive_mase > 1.0, "{b:?}");
}

#[test]
fn a_constant_series_cannot_be_scored() {
    let e = backtest(&[4.0; 200], 12, None, 3).unwrap_err();
    assert!(e == ForecastError::Unscorable, "{e}");
}

#[test]
fn a_ramp_crosses_its_limit_near_the_analytic_time() {
    // 2 units per minute from 10 at t = 0; 300 is reached at minute 145.
    let step = 60_000;
    let history: Vec<(i64, f64)> = (0..120)
        .map(|i| (i * step, 10.0 + 2.0 * i as f64))
        .collect();
    let c = capacity::crossing(&history, step, 300.0, 60 * step)
        .unwrap()
        .expect("a crossing within the hour");
    assert!((c.at_ms - 145 * step).abs() <= step, "{c:?}");
    assert!(c.value >= 300.0 && c.value < 304.0, "{c:?}");
    // Not within 20 minutes.
    assert_eq!(
        capacity::crossing(&history, step, 300.0, 20 * step).unwrap(),
        None
    );
}

#[test]
fn a_flat_series_never_crosses() {
    let history: Vec<(i64, f64)> = (0..200)
        .map(|i| (i * 1_000, 40.0 + (i % 3) as f64))
        .collect();
    assert_eq!(
        capacity::crossing(&history, 1_000, 80.0, 3_600_000).unwrap(),
        None
    );
}

#[test]
fn crossing_fills_small_gaps_and_refuses_bad_history() {
    let step = 1_000;
    let mut history: Vec<(i64, f64)> = (0..50).map(|i| (i * step, i as f64)).collect();
    history.retain(|&(t, _)| !(20_000..25_000).contains(&t));
    // Five steps missing: filled, and the ramp still crosses (late, as the carried values
    // flatten it).
    let c: Option<Crossing> = capacity::crossing(&history, step, 60.0, 100 * step).unwrap();
    assert!(c.is_some_and(|c| c.at_ms > 49 * step), "{c:?}");
    history.retain(|&(t, _)| !(30_000..44_000).contains(&t));
    let e = capacity::crossing(&history, step, 60.0, 100 * step).unwrap_err();
    assert!(matches!(e, ForecastError::Gap { missing: 14, .. }), "{e}");
    let back = [(0, 1.0), (2_000, 1.0), (1_000, 1.0)];
    let e = capacity::crossing(&back, step, 60.0, 100 * step).unwrap_err();
    assert!(
        matches!(e, ForecastError::Unordered { at_ms: 1_000, .. }),
        "{e}"
    );
    assert_eq!(
        capacity::crossing(&history, 0, 60.0, step),
        Err(ForecastError::Step(0))
    );
    let e = capacity::crossing(&[], step, 60.0, step).unwrap_err();
    assert!(matches!(e, ForecastError::TooShort { have: 0, .. }), "{e}");
}
