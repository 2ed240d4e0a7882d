//! Alerts from anomalous points: an alert fires after `persistence` anomalous points in a
//! row, and a series that fired stays quiet for `cooldown`.

/// The alerting state of one series.
#[derive(Debug, Clone)]
pub struct Gate {
    persistence: u32,
    cooldown_ms: i64,
    run: u32,
    last_fired: Option<i64>,
}

impl Gate {
    /// A gate firing after `persistence` anomalous points in a row (at least 1), at most
    /// once per `cooldown_ms`.
    pub fn new(persistence: u32, cooldown_ms: i64) -> Gate {
        Gate {
            persistence: persistence.max(1),
            cooldown_ms: cooldown_ms.max(0),
            run: 0,
            last_fired: None,
        }
    }

    /// Takes the point at `at_ms`; true when it fires an alert.
    pub fn observe(&mut self, at_ms: i64, anomalous: bool) -> bool {
        if !anomalous {
            self.run = 0;
            return false;
        }
        self.run = self.run.saturating_add(1);
        if self.run < self.persistence {
            return false;
        }
        if let Some(last) = self.last_fired
            && at_ms.saturating_sub(last) < self.cooldown_ms
        {
            return false;
        }
        self.last_fired = Some(at_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;

    fn fire_times(gate: &mut Gate, points: &[(i64, bool)]) -> Vec<i64> {
        points
            .iter()
            .filter(|&&(at, a)| gate.observe(at, a))
            .map(|&(at, _)| at)
            .collect()
    }

    #[test]
    fn fires_after_persistence_points_in_a_row() {
        let mut g = Gate::new(3, 0);
        let pts = [
            (1, true),
            (2, true),
            (3, false),
            (4, true),
            (5, true),
            (6, true),
        ];
        assert_eq!(fire_times(&mut g, &pts), vec![6]);
    }

    #[test]
    fn cooldown_silences_repeats_then_lets_through() {
        let mut g = Gate::new(1, 10);
        let pts: Vec<_> = (0..25).map(|t| (t, true)).collect();
        assert_eq!(fire_times(&mut g, &pts), vec![0, 10, 20]);
    }

    #[test]
    fn zero_persistence_means_one_point() {
        let mut g = Gate::new(0, 0);
        assert!(g.observe(0, true));
        assert!(!g.observe(1, false));
    }
}
