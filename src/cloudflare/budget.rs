//! The Cloudflare API budget: one process's share of the account's requests, and the
//! limiter that keeps the process inside it.
//!
//! Cloudflare allows a token 1,200 requests per 5 minutes, and going over blocks it for
//! the next five minutes. The install divides that between its functions (a share each)
//! and each function's share between the processes that can run at once. A process then
//! delays each request until its share allows it (`Limiter`, a generic cell rate
//! algorithm: a steady rate plus a small burst). A request whose turn would come after the
//! invocation's deadline fails at once with [`CfError::BudgetSpent`], which is transient,
//! so the event is retried later rather than the Lambda waiting for ever.
//!
//! The deadline comes from the door: [`with_deadline`] runs an invocation's work with its
//! deadline in scope (a tokio task-local), and every request made inside it is held to it.

use super::error::CfError;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What one process may send: `per_window` requests in any `window`, of which `burst` may
/// go at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Requests this process may send in any window (its burst included).
    pub per_window: u32,
    /// The window the account's limit is counted over (Cloudflare: 5 minutes).
    pub window: Duration,
    /// Requests that may go back to back when the process has been quiet.
    pub burst: u32,
}

/// Fewest requests per window a process can work with (a burst of one, a steady rate of
/// at least one, and the one kept in reserve).
pub const MIN_PER_WINDOW: u32 = 3;

impl Budget {
    /// One process's part of the account's budget: `account` requests per `window` for the
    /// whole install, of which this function gets `share_percent`, split evenly between
    /// the `processes` of it that can run at once. The burst is a twentieth of that (at
    /// least one request).
    ///
    /// `None` when `account` is 0 (no limit). An error when the part is smaller than
    /// [`MIN_PER_WINDOW`].
    pub fn share_of(
        account: u32,
        window: Duration,
        share_percent: u32,
        processes: u32,
    ) -> Result<Option<Budget>, String> {
        if account == 0 {
            return Ok(None);
        }
        let per_window =
            u64::from(account) * u64::from(share_percent) / 100 / u64::from(processes.max(1));
        let per_window = u32::try_from(per_window).unwrap_or(u32::MAX);
        if per_window < MIN_PER_WINDOW {
            return Err(format!(
                "{share_percent}% of {account} requests split between {processes} processes leaves each fewer than {MIN_PER_WINDOW} requests per window"
            ));
        }
        Ok(Some(Budget {
            per_window,
            window,
            burst: (per_window / 20).max(1),
        }))
    }

    /// The steady part: requests per window after the burst, with one kept in reserve
    /// against network delay (a request scheduled at the end of one window may arrive
    /// with the next).
    pub fn steady(&self) -> u32 {
        self.per_window.saturating_sub(self.burst + 1).max(1)
    }

    /// The steady rate, requests per second.
    pub fn rate_per_second(&self) -> f64 {
        f64::from(self.steady()) / self.window.as_secs_f64()
    }

    /// Time between two requests at the steady rate (rounded up to the nanosecond, so
    /// `steady` intervals never add up to less than the window).
    fn interval(&self) -> Duration {
        let nanos = self.window.as_nanos().div_ceil(u128::from(self.steady()));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` holding every Cloudflare request made inside it to `deadline`: a request
/// whose turn in the budget comes later fails with [`CfError::BudgetSpent`]. Without a
/// deadline, requests wait for their turn however long it is.
pub async fn with_deadline<F: Future>(deadline: Option<std::time::Instant>, work: F) -> F::Output {
    match deadline {
        Some(d) => DEADLINE.scope(Instant::from_std(d), work).await,
        None => work.await,
    }
}

/// The deadline of the current invocation, if the door set one.
fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Keeps one process within its [`Budget`]: a generic cell rate algorithm that reserves a
/// send time for each request (a steady interval, `burst - 1` intervals of tolerance), so
/// concurrent requests queue in order without polling.
#[derive(Debug)]
pub(crate) struct Limiter {
    budget: Budget,
    interval: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    tat: Mutex<Instant>,
}

impl Limiter {
    /// A limiter whose burst is available at once.
    pub fn new(budget: Budget) -> Self {
        let interval = budget.interval();
        Limiter {
            budget,
            interval,
            tolerance: interval * budget.burst.saturating_sub(1),
            tat: Mutex::new(Instant::now()),
        }
    }

    /// The budget it enforces.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Reserves the next send time at or after `now`: how long to wait for it, or, when it
    /// falls after `deadline`, how long it would have been (nothing is reserved then).
    fn reserve(&self, now: Instant, deadline: Option<Instant>) -> Result<Duration, Duration> {
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        let next = (*tat).max(now);
        let at = if next > now + self.tolerance {
            next - self.tolerance
        } else {
            now
        };
        if deadline.is_some_and(|d| at > d) {
            return Err(at - now);
        }
        *tat = next + self.interval;
        Ok(at - now)
    }

    /// Waits for this request's turn; fails at once when the turn comes after the
    /// invocation's deadline. Returns how long it waited.
    pub async fn acquire(&self) -> Result<Duration, CfError> {
        match self.reserve(Instant::now(), current_deadline()) {
            Ok(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(wait)
            }
            Err(wait) => Err(CfError::BudgetSpent { wait }),
        }
    }

    /// Sends nothing before `until` (Cloudflare answered 429 and asked to wait): every
    /// request of the process waits, not only the one retried.
    pub fn hold_until(&self, until: Instant) {
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        *tat = (*tat).max(until + self.tolerance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN5: Duration = Duration::from_secs(300);

    #[test]
    fn shares_of_the_install_budget() {
        // The template's defaults: 1,200 per 5 minutes; events 55% over 2 processes,
        // the sweep 35% over 1, custom resources and the rotation target 5% each.
        let events = Budget::share_of(1200, MIN5, 55, 2).unwrap().unwrap();
        assert_eq!(
            (events.per_window, events.burst, events.steady()),
            (330, 16, 313)
        );
        let sweep = Budget::share_of(1200, MIN5, 35, 1).unwrap().unwrap();
        assert_eq!(
            (sweep.per_window, sweep.burst, sweep.steady()),
            (420, 21, 398)
        );
        let other = Budget::share_of(1200, MIN5, 5, 1).unwrap().unwrap();
        assert_eq!((other.per_window, other.burst, other.steady()), (60, 3, 56));
        // Every function at its maximum concurrency stays inside the account's limit.
        assert!(2 * events.per_window + sweep.per_window + 2 * other.per_window <= 1200);
        assert!((events.rate_per_second() - 313.0 / 300.0).abs() < 1e-9);
        assert_eq!(Budget::share_of(0, MIN5, 55, 2), Ok(None));
        let e = Budget::share_of(10, MIN5, 5, 1).unwrap_err();
        assert!(e.contains("fewer than 3"), "{e}");
    }

    fn limiter(per_window: u32, window_ms: u64, burst: u32) -> Limiter {
        Limiter::new(Budget {
            per_window,
            window: Duration::from_millis(window_ms),
            burst,
        })
    }

    /// Most requests in any window of length `w` (counting `(t - w, t]`, as Cloudflare's
    /// sliding window does).
    fn most_in_any_window(times: &[Duration], w: Duration) -> usize {
        (0..times.len())
            .map(|j| times[..=j].iter().filter(|t| times[j] - **t < w).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn never_more_than_the_share_in_any_window() {
        // 200 requests asked for at once (the greediest caller), then 100 more after a
        // quiet spell of a whole window: the send times the limiter gives them.
        let l = limiter(40, 10_000, 4);
        let t0 = l.tat.lock().unwrap().to_owned();
        let mut times: Vec<Duration> = (0..200)
            .map(|_| l.reserve(t0, None).expect("no deadline"))
            .collect();
        // The burst goes at once, then one request per 10 s / 35.
        assert_eq!(times[3], Duration::ZERO);
        let interval = Duration::from_nanos(285_714_286);
        assert_eq!(times[4], interval);
        // … and the share is not wasted: 196 intervals after the burst.
        assert_eq!(times[199], interval * 196);
        let later = times[199] + Duration::from_secs(10);
        times.extend((0..100).map(|_| later + l.reserve(t0 + later, None).unwrap()));
        let most = most_in_any_window(&times, Duration::from_secs(10));
        assert_eq!(most, 38, "the burst, 34 steady, none of the one in reserve");
        assert!(most < 40);
    }

    #[test]
    fn a_turn_after_the_deadline_is_refused_and_not_reserved() {
        let l = limiter(12, 10_000, 1); // one request a second
        let t0 = Instant::now();
        let deadline = Some(t0 + Duration::from_millis(2500));
        assert_eq!(l.reserve(t0, deadline), Ok(Duration::ZERO));
        assert_eq!(l.reserve(t0, deadline), Ok(Duration::from_secs(1)));
        assert_eq!(l.reserve(t0, deadline), Ok(Duration::from_secs(2)));
        assert_eq!(l.reserve(t0, deadline), Err(Duration::from_secs(3)));
        assert_eq!(l.reserve(t0, deadline), Err(Duration::from_secs(3)));
        assert_eq!(l.reserve(t0, None), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn a_hold_delays_every_request_and_spends_the_burst() {
        let l = limiter(120, 10_000, 10);
        let t0 = Instant::now();
        l.hold_until(t0 + Duration::from_secs(7));
        assert_eq!(l.reserve(t0, None), Ok(Duration::from_secs(7)));
        let interval = Duration::from_nanos(91_743_120); // 10 s / 109, rounded up
        assert_eq!(l.reserve(t0, None), Ok(Duration::from_secs(7) + interval));
        // A hold that ends before the next turn changes nothing.
        l.hold_until(t0);
        assert_eq!(
            l.reserve(t0, None),
            Ok(Duration::from_secs(7) + interval * 2)
        );
    }

    #[tokio::test]
    async fn acquire_waits_its_turn_and_fails_at_once_past_the_deadline() {
        let l = limiter(12, 1000, 2); // a burst of 2, then one per 100 ms
        let started = Instant::now();
        for _ in 0..3 {
            l.acquire().await.expect("no deadline");
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
        // Inside an invocation whose deadline is nearer than the next turn: no wait.
        let l = limiter(12, 100_000, 1); // one per 10 s
        l.acquire().await.unwrap();
        let started = Instant::now();
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        let e = with_deadline(Some(deadline), l.acquire())
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(e.is_transient(), "{e}");
        assert!(
            e.to_string().contains("budget is spent") && e.to_string().contains("in 10 s"),
            "{e}"
        );
        // Outside it (the CLI), the same request waits.
        assert!(with_deadline(None, async { DEADLINE.try_with(|_| ()).is_err() }).await);
    }
}
