//! How many Cloudflare round trips of a reconcile depend on one another: the depth of the
//! longest chain of requests in which each starts only after the one before it ended.
//!
//! The simulator logs when each request arrived and when its answer was ready. With a
//! latency added to every request (50 ms, far above the simulator's own handling time),
//! requests the client sends together overlap, and a request that waits for another's
//! answer starts after it ended; so the chain depth is the number of dependent round
//! trips, whatever the machine's speed. This is cleaner than the wall-time estimate
//! ([`wall_time_levels`]), which also counts the time spent on AWS calls and in the
//! function itself.

use std::time::Duration;

/// The depth of the longest chain of `(start, end)` intervals in which each interval
/// starts at or after the end of the one before; 0 for none.
pub fn dependency_levels(intervals: &[(u64, u64)]) -> usize {
    let mut sorted: Vec<(u64, u64)> = intervals.to_vec();
    sorted.sort_unstable();
    let mut depth = vec![0usize; sorted.len()];
    for i in 0..sorted.len() {
        let before = (0..i)
            .filter(|&j| sorted[j].1 <= sorted[i].0)
            .map(|j| depth[j])
            .max()
            .unwrap_or(0);
        depth[i] = before + 1;
    }
    depth.into_iter().max().unwrap_or(0)
}

/// The wall-time estimate of the same: (time with `latency` on every request − time
/// without) / `latency`.
pub fn wall_time_levels(with_latency: Duration, without: Duration, latency: Duration) -> f64 {
    if latency.is_zero() {
        return 0.0;
    }
    (with_latency.as_secs_f64() - without.as_secs_f64()) / latency.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_counts_each_request() {
        assert_eq!(dependency_levels(&[]), 0);
        assert_eq!(dependency_levels(&[(0, 50)]), 1);
        assert_eq!(dependency_levels(&[(0, 50), (50, 100), (101, 150)]), 3);
    }

    #[test]
    fn requests_sent_together_are_one_level() {
        // Three together, then one that needed all of them, then two together.
        let log = [(0, 52), (1, 51), (2, 53), (60, 110), (111, 161), (112, 163)];
        assert_eq!(dependency_levels(&log), 3);
    }

    #[test]
    fn the_longest_chain_wins_over_a_short_one_beside_it() {
        // One long request beside a chain of three short ones.
        let log = [(0, 200), (0, 50), (55, 100), (105, 150), (210, 260)];
        assert_eq!(dependency_levels(&log), 4);
    }

    #[test]
    fn wall_time_estimate() {
        let l = wall_time_levels(
            Duration::from_millis(400),
            Duration::from_millis(100),
            Duration::from_millis(50),
        );
        assert!((l - 6.0).abs() < 1e-9);
        assert_eq!(
            wall_time_levels(Duration::from_secs(1), Duration::ZERO, Duration::ZERO),
            0.0
        );
    }
}
