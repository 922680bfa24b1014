//! The Cloudflare API budget: one process's share of the account's requests, and the
//! limiter that keeps the process inside it, shared fairly between the tenants (AWS
//! accounts) the process works for.
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
//! The tenant comes the same way: [`with_tenant`] runs work on behalf of one AWS account.
//!
//! # Fair turns
//!
//! One install (the hub) can serve many AWS accounts from one budget, so one busy account
//! must not starve the others. The limiter therefore does not hand out send times at
//! arrival (that would let the first tenant to ask commit the future). Requests wait in a
//! queue per tenant, the tenants with requests waiting form a round, and a slot is taken
//! only when it comes up, by the first request of the tenant whose turn it is; that tenant
//! then goes to the back of the round. So a tenant that queued 100 requests delays a
//! newcomer's first one by about one turn, not 100, and with one tenant the order and the
//! send times are exactly those of a plain cell rate limiter (FIFO, burst, steady rate).
//!
//! There is no polling: only the request at the front of the round sleeps, until the
//! next slot; the others sleep until woken, which happens when they reach the front (and
//! at their deadline, if they have one). A request that leaves the queue without its slot
//! (its future dropped, or refused) takes nothing with it: slots are only taken when sent.
//! On arrival, a request is refused at once when its estimated turn (the round as it
//! stands, nobody else asking) comes after its deadline. Tenants that start asking later
//! can push it back; it then fails when it reaches the front with its turn past the
//! deadline, or at the deadline, whichever comes first. A 429's hold (`hold_until`) moves
//! the next slot for everyone: the front request finds it moved when it wakes, and sleeps
//! again.

use super::error::CfError;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
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
    static TENANT: Tenant;
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

/// Who a request is made for (an AWS account id); `None` is the default tenant, that of
/// every request made outside [`with_tenant`].
type Tenant = Option<String>;

/// Runs `work` on behalf of `tenant` (an AWS account id): the process's API budget is
/// shared fairly between tenants, in turns (see [the module](self)). The innermost scope
/// wins, `None` included (the default tenant, shared by everything outside any scope).
pub async fn with_tenant<F: Future>(tenant: Option<String>, work: F) -> F::Output {
    TENANT.scope(tenant, work).await
}

/// The tenant requests made here are made for.
fn current_tenant() -> Tenant {
    TENANT.try_with(Clone::clone).ok().flatten()
}

/// A request waiting for its turn.
#[derive(Debug)]
struct Waiter {
    id: u64,
    /// Woken when the request reaches the front of the round.
    wake: Arc<Notify>,
}

/// The requests waiting for a slot: a queue per tenant, the tenants in the order of their
/// next turn. The first request of the first tenant (the front) takes the next slot.
#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    round: VecDeque<(Tenant, VecDeque<Waiter>)>,
}

impl Queue {
    /// The request that takes the next slot.
    fn front(&self) -> Option<&Waiter> {
        self.round.front().and_then(|(_, waiters)| waiters.front())
    }

    /// Where `tenant` is in the round, if it has requests waiting.
    fn place(&self, tenant: &Tenant) -> Option<usize> {
        self.round.iter().position(|(t, _)| t == tenant)
    }

    /// Requests of `tenant` waiting.
    fn waiting_for(&self, tenant: &Tenant) -> usize {
        self.place(tenant).map_or(0, |i| self.round[i].1.len())
    }

    /// Where request `id` of `tenant` is in its tenant's queue.
    fn index_of(&self, tenant: &Tenant, id: u64) -> Option<usize> {
        let i = self.place(tenant)?;
        self.round[i].1.iter().position(|w| w.id == id)
    }

    /// Slots taken before the `index`th waiting request of `tenant` (its next one when
    /// `index` is the number it has waiting) if nobody else asks: every tenant ahead of it
    /// in the round gets `index + 1` turns first, every one behind it `index`.
    fn turns_before(&self, tenant: &Tenant, index: usize) -> usize {
        let at = self.place(tenant).unwrap_or(self.round.len());
        self.round
            .iter()
            .enumerate()
            .map(|(i, (_, waiters))| match i.cmp(&at) {
                std::cmp::Ordering::Less => waiters.len().min(index + 1),
                std::cmp::Ordering::Equal => index,
                std::cmp::Ordering::Greater => waiters.len().min(index),
            })
            .sum()
    }

    /// Queues a request of `tenant` (a tenant new to the round joins at its back).
    fn push(&mut self, tenant: &Tenant, wake: Arc<Notify>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let waiter = Waiter { id, wake };
        match self.place(tenant) {
            Some(i) => self.round[i].1.push_back(waiter),
            None => self
                .round
                .push_back((tenant.clone(), VecDeque::from([waiter]))),
        }
        id
    }

    /// Takes request `id` of `tenant` out of the queue. `sent`: it took its slot, so its
    /// tenant goes to the back of the round; otherwise (dropped or refused) the tenant
    /// keeps its place. Wakes the new front when the front changed.
    fn remove(&mut self, tenant: &Tenant, id: u64, sent: bool) {
        let was_front = self.front().is_some_and(|w| w.id == id);
        let Some(i) = self.place(tenant) else {
            return;
        };
        let waiters = &mut self.round[i].1;
        waiters.retain(|w| w.id != id);
        if waiters.is_empty() {
            self.round.remove(i);
        } else if sent && i == 0 {
            self.round.rotate_left(1);
        }
        if was_front {
            if let Some(next) = self.front() {
                next.wake.notify_one();
            }
        }
    }

    /// Requests waiting, all tenants together.
    fn len(&self) -> usize {
        self.round.iter().map(|(_, waiters)| waiters.len()).sum()
    }
}

/// A request's place in the queue: dropped before the request is sent (refused, or its
/// future dropped), it gives the place up.
struct Ticket<'a> {
    limiter: &'a Limiter,
    tenant: Tenant,
    id: u64,
    sent: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.limiter.queue().remove(&self.tenant, self.id, false);
        }
    }
}

/// What a queued request does next.
enum Step {
    /// It is at the front: sleep until this slot, then take it.
    SleepUntil(Instant),
    /// It is behind others: wait to be woken.
    Wait,
    /// Its turn comes after its deadline: fail, after waiting this long.
    Refuse(Duration),
}

/// Keeps one process within its [`Budget`]: a generic cell rate algorithm (a steady
/// interval, `burst - 1` intervals of tolerance) whose slots are taken in turns by the
/// tenants waiting, without polling (see [the module](self)).
#[derive(Debug)]
pub(crate) struct Limiter {
    budget: Budget,
    interval: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    tat: Mutex<Instant>,
    /// The requests waiting for a slot. Lock order: `queue`, then `tat`.
    queue: Mutex<Queue>,
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
            queue: Mutex::new(Queue::default()),
        }
    }

    /// The budget it enforces.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Requests waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.queue().len()
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tat(&self) -> MutexGuard<'_, Instant> {
        self.tat.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the request after `ahead` others would be sent, asked at `now` with the
    /// theoretical arrival time at `tat`.
    fn turn_at(&self, tat: Instant, now: Instant, ahead: usize) -> Instant {
        let ahead = u32::try_from(ahead).unwrap_or(u32::MAX);
        let Some(next) = tat
            .max(now)
            .checked_add(self.interval.saturating_mul(ahead))
        else {
            return now + Duration::from_secs(365 * 86_400);
        };
        if next > now + self.tolerance {
            next - self.tolerance
        } else {
            now
        }
    }

    /// Reserves the next send time at or after `now`: how long to wait for it, or, when it
    /// falls after `deadline`, how long it would have been (nothing is reserved then).
    /// The queue calls it only for a slot that has come (`deadline` = `now`).
    fn reserve(&self, now: Instant, deadline: Option<Instant>) -> Result<Duration, Duration> {
        let mut tat = self.tat();
        let at = self.turn_at(*tat, now, 0);
        if deadline.is_some_and(|d| at > d) {
            return Err(at - now);
        }
        *tat = (*tat).max(now) + self.interval;
        Ok(at - now)
    }

    /// Waits for this request's turn (that of its tenant, see [`with_tenant`]); fails at
    /// once when the turn comes after the invocation's deadline. Returns how long it waited.
    pub async fn acquire(&self) -> Result<Duration, CfError> {
        let asked = Instant::now();
        let deadline = current_deadline();
        let tenant = current_tenant();
        let wake = Arc::new(Notify::new());
        let id = {
            let mut queue = self.queue();
            let ahead = queue.turns_before(&tenant, queue.waiting_for(&tenant));
            // Nobody waiting and a slot free: it goes now.
            if ahead == 0 && self.reserve(asked, Some(asked)).is_ok() {
                return Ok(Duration::ZERO);
            }
            let at = self.turn_at(*self.tat(), asked, ahead);
            if deadline.is_some_and(|d| at > d) {
                return Err(CfError::BudgetSpent { wait: at - asked });
            }
            queue.push(&tenant, wake.clone())
        };
        let mut ticket = Ticket {
            limiter: self,
            tenant,
            id,
            sent: false,
        };
        loop {
            match self.next_step(&ticket, deadline) {
                Step::SleepUntil(at) => {
                    tokio::time::sleep_until(at).await;
                    // Nobody else takes slots while requests wait, but a 429 may have
                    // moved the next one since: then look again.
                    let mut queue = self.queue();
                    if self.reserve(at, Some(at)).is_ok() {
                        ticket.sent = true;
                        queue.remove(&ticket.tenant, id, true);
                        return Ok(Instant::now().saturating_duration_since(asked));
                    }
                }
                Step::Wait => match deadline {
                    None => wake.notified().await,
                    Some(d) => {
                        tokio::select! {
                            () = wake.notified() => {}
                            () = tokio::time::sleep_until(d) => {
                                let wait = self.estimated_wait(&ticket);
                                return Err(CfError::BudgetSpent { wait });
                            }
                        }
                    }
                },
                Step::Refuse(wait) => return Err(CfError::BudgetSpent { wait }),
            }
        }
    }

    /// What the queued request of `ticket` does next.
    fn next_step(&self, ticket: &Ticket<'_>, deadline: Option<Instant>) -> Step {
        let queue = self.queue();
        if queue.front().is_none_or(|w| w.id != ticket.id) {
            return Step::Wait;
        }
        let now = Instant::now();
        let at = self.turn_at(*self.tat(), now, 0);
        if deadline.is_some_and(|d| at > d) {
            Step::Refuse(at - now)
        } else {
            Step::SleepUntil(at)
        }
    }

    /// How long the queued request of `ticket` still has to wait if nobody else asks.
    fn estimated_wait(&self, ticket: &Ticket<'_>) -> Duration {
        let queue = self.queue();
        let index = queue.index_of(&ticket.tenant, ticket.id).unwrap_or(0);
        let ahead = queue.turns_before(&ticket.tenant, index);
        let now = Instant::now();
        self.turn_at(*self.tat(), now, ahead) - now
    }

    /// Sends nothing before `until` (Cloudflare answered 429 and asked to wait): every
    /// request of the process waits, not only the one retried.
    pub fn hold_until(&self, until: Instant) {
        let mut tat = self.tat();
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

    #[tokio::test]
    async fn the_innermost_tenant_scope_wins() {
        assert_eq!(current_tenant(), None);
        with_tenant(Some("111111111111".into()), async {
            assert_eq!(current_tenant().as_deref(), Some("111111111111"));
            with_tenant(Some("222222222222".into()), async {
                assert_eq!(current_tenant().as_deref(), Some("222222222222"));
            })
            .await;
            assert_eq!(with_tenant(None, async { current_tenant() }).await, None);
            assert_eq!(current_tenant().as_deref(), Some("111111111111"));
        })
        .await;
    }

    // The tests below run on the real clock (the crate's tokio has no `test-util`, so
    // time cannot be paused): they check the order of turns exactly and times within
    // `SLACK`, and never earlier than due.

    /// How late a wake-up may be on a busy machine.
    const SLACK: Duration = Duration::from_millis(90);
    /// The interval of `one_per_tick`.
    const TICK: Duration = Duration::from_millis(100);

    /// One request per `TICK`, no burst.
    fn one_per_tick() -> Arc<Limiter> {
        Arc::new(limiter(12, 1000, 1))
    }

    /// `actual` is `expected` or at most `SLACK` later.
    #[track_caller]
    fn due(actual: Duration, expected: Duration) {
        assert!(
            actual >= expected && actual <= expected + SLACK,
            "{actual:?}, expected {expected:?}"
        );
    }

    /// `actual` is within `SLACK` of `expected`, either way.
    #[track_caller]
    fn near(actual: Duration, expected: Duration) {
        let gap = actual.max(expected) - actual.min(expected);
        assert!(gap <= SLACK, "{actual:?}, expected {expected:?}");
    }

    /// The tenants and times (since the test's start) of requests, as they are let go.
    type Log = Arc<Mutex<Vec<(&'static str, Duration)>>>;

    type Task = tokio::task::JoinHandle<Result<Duration, CfError>>;

    /// Starts `n` requests of `tenant` ("": the default tenant), each a task that asks for
    /// its turn the first time it runs, recording when it is let go.
    fn ask(l: &Arc<Limiter>, tenant: &'static str, n: usize, t0: Instant, log: &Log) -> Vec<Task> {
        (0..n)
            .map(|_| {
                let (l, log) = (l.clone(), log.clone());
                let name = (!tenant.is_empty()).then(|| tenant.to_string());
                tokio::spawn(with_tenant(name, async move {
                    let r = l.acquire().await;
                    if r.is_ok() {
                        log.lock().unwrap().push((tenant, t0.elapsed()));
                    }
                    r
                }))
            })
            .collect()
    }

    /// Lets the tasks started so far run until they wait.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    async fn join_all(tasks: Vec<Task>) {
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    fn times_of(log: &Log, tenant: &str) -> Vec<Duration> {
        let log = log.lock().unwrap();
        log.iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, at)| *at)
            .collect()
    }

    fn order_of(log: &Log) -> String {
        log.lock().unwrap().iter().map(|(t, _)| *t).collect()
    }

    #[tokio::test]
    async fn a_newcomer_waits_about_one_turn_behind_a_noisy_tenant() {
        let l = Arc::new(limiter(55, 1000, 4)); // a burst of 4, then one per 20 ms
        let interval = Duration::from_millis(20);
        let (t0, log) = (Instant::now(), Log::default());
        let noisy = ask(&l, "A", 50, t0, &log);
        settle().await;
        assert_eq!(l.waiting(), 46, "the burst went at once");
        let asked = Instant::now();
        with_tenant(Some("B".into()), l.acquire()).await.unwrap();
        log.lock().unwrap().push(("B", t0.elapsed()));
        due(asked.elapsed(), interval * 2); // one turn of A, then B's
        join_all(noisy).await;
        // A lost one turn to B, no more: the share is not wasted.
        due(*times_of(&log, "A").last().unwrap(), interval * 47);
        assert_eq!(
            order_of(&log),
            format!("{}B{}", "A".repeat(5), "A".repeat(45))
        );
        assert_eq!(l.waiting(), 0);
    }

    #[tokio::test]
    async fn two_busy_tenants_take_turns() {
        let l = Arc::new(limiter(52, 1000, 1)); // one per 20 ms
        let (t0, log) = (Instant::now(), Log::default());
        let mut tasks = ask(&l, "A", 30, t0, &log);
        tasks.extend(ask(&l, "B", 30, t0, &log));
        join_all(tasks).await;
        let order = order_of(&log);
        let a = order[..20].matches('A').count();
        assert!(
            (9..=11).contains(&a),
            "A had {a} of the first 20 turns: {order}"
        );
        // A's first request took the free slot, A's second was waiting when B came;
        // from then on, strictly in turns.
        assert_eq!(order, format!("A{}B", "AB".repeat(29)));
        // … at the steady rate, as one tenant would have been.
        let times: Vec<Duration> = log.lock().unwrap().iter().map(|(_, at)| *at).collect();
        for (k, at) in times.into_iter().enumerate() {
            due(at, Duration::from_millis(20) * k as u32);
        }
    }

    #[tokio::test]
    async fn one_tenant_gets_the_send_times_of_a_plain_limiter() {
        // Through `acquire` and the queue, in the default tenant and in a named one: the
        // schedule `reserve` gives when asked all at once.
        for tenant in ["", "A"] {
            let l = Arc::new(limiter(40, 1000, 4));
            let plain = limiter(40, 1000, 4);
            let (t0, log) = (Instant::now(), Log::default());
            *plain.tat.lock().unwrap() = *l.tat.lock().unwrap();
            join_all(ask(&l, tenant, 60, t0, &log)).await;
            let times = times_of(&log, tenant);
            assert_eq!(times.len(), 60);
            let base = *plain.tat.lock().unwrap();
            for at in times {
                due(at, plain.reserve(base, None).unwrap());
            }
        }
    }

    /// A deadline `ticks` `TICK`s from now.
    fn in_ticks(ticks: f64) -> Option<std::time::Instant> {
        Some((Instant::now() + TICK.mul_f64(ticks)).into_std())
    }

    /// Starts one request of `tenant` with a deadline; the task gives its result and when
    /// it came (since `t0`).
    fn ask_by(
        l: &Arc<Limiter>,
        tenant: &'static str,
        deadline: Option<std::time::Instant>,
        t0: Instant,
    ) -> tokio::task::JoinHandle<(Result<Duration, CfError>, Duration)> {
        let l = l.clone();
        let work = async move { (l.acquire().await, t0.elapsed()) };
        tokio::spawn(with_tenant(
            Some(tenant.into()),
            with_deadline(deadline, work),
        ))
    }

    #[track_caller]
    fn spent(r: Result<Duration, CfError>, wait: Duration) {
        match r {
            Err(CfError::BudgetSpent { wait: w }) => near(w, wait),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn past_the_deadline_a_request_fails_at_once_and_delays_nobody() {
        let l = one_per_tick();
        let (t0, log) = (Instant::now(), Log::default());
        let busy = ask(&l, "A", 5, t0, &log); // 0, then one a tick
        settle().await;
        // B's turn would be the second (2 ticks), after its deadline: refused at once.
        let (r, at) = ask_by(&l, "B", in_ticks(1.5), t0).await.unwrap();
        spent(r, TICK * 2);
        near(at, Duration::ZERO);
        assert_eq!(l.waiting(), 4);
        // It took no slot: B's next request gets that turn.
        let (r, at) = ask_by(&l, "B", in_ticks(2.5), t0).await.unwrap();
        near(r.unwrap(), TICK * 2);
        due(at, TICK * 2);
        join_all(busy).await;
        for (at, ticks) in times_of(&log, "A").into_iter().zip([0, 1, 3, 4, 5]) {
            due(at, TICK * ticks);
        }
    }

    #[tokio::test]
    async fn a_request_pushed_past_its_deadline_fails_by_then_and_takes_no_turn() {
        let l = one_per_tick();
        let (t0, log) = (Instant::now(), Log::default());
        let mut tasks = ask(&l, "A", 2, t0, &log); // 0 and 1 tick
        settle().await;
        // Both admitted: as things stand, their turns are at 2 and 3 ticks.
        let late = ask_by(&l, "A", in_ticks(2.5), t0);
        let front = ask_by(&l, "A", in_ticks(4.5), t0);
        settle().await;
        // Three more tenants join the round: 2 B, 3 C, 4 D, then A's at 5, 6.
        for t in ["B", "C", "D"] {
            tasks.extend(ask(&l, t, 1, t0, &log));
        }
        // Still behind C and D at its deadline: fails then, with its new turn as the wait.
        let (r, at) = late.await.unwrap();
        spent(r, TICK * 5 / 2);
        due(at, TICK * 5 / 2);
        // At the front at 4 ticks with its turn at 5: fails then, before its deadline.
        let (r, at) = front.await.unwrap();
        spent(r, TICK);
        due(at, TICK * 4);
        join_all(tasks).await;
        assert_eq!(order_of(&log), "AABCD");
        // Neither took a slot: the next request goes at 5 ticks.
        assert_eq!(l.waiting(), 0);
        l.acquire().await.unwrap();
        due(t0.elapsed(), TICK * 5);
    }

    #[tokio::test]
    async fn a_dropped_request_leaves_its_turn_and_wedges_nothing() {
        let l = one_per_tick();
        let (t0, log) = (Instant::now(), Log::default());
        l.acquire().await.unwrap(); // the free slot
                                    // A's first waits at the front for a tick, but its caller gives up at half.
        let gives_up = {
            let l = l.clone();
            tokio::spawn(with_tenant(Some("A".into()), async move {
                tokio::time::timeout(TICK / 2, l.acquire()).await
            }))
        };
        settle().await;
        let mut tasks = ask(&l, "B", 1, t0, &log);
        let aborted = ask(&l, "A", 1, t0, &log).pop().unwrap();
        tasks.extend(ask(&l, "B", 1, t0, &log));
        tasks.extend(ask(&l, "A", 1, t0, &log));
        settle().await;
        assert_eq!(l.waiting(), 5);
        aborted.abort(); // one in the middle goes too
        assert!(aborted.await.unwrap_err().is_cancelled());
        assert!(gives_up.await.unwrap().is_err());
        assert_eq!(l.waiting(), 3);
        join_all(tasks).await;
        // The front's slot (1 tick) is not lost: A, which had not had its turn, keeps it.
        assert_eq!(order_of(&log), "ABB");
        for (at, ticks) in times_of(&log, "A").into_iter().zip([1]) {
            due(at, TICK * ticks);
        }
        for (at, ticks) in times_of(&log, "B").into_iter().zip([2, 3]) {
            due(at, TICK * ticks);
        }
        assert_eq!(l.waiting(), 0);
        l.acquire().await.unwrap();
        due(t0.elapsed(), TICK * 4);
    }

    #[tokio::test]
    async fn a_hold_delays_the_requests_already_waiting() {
        let l = one_per_tick();
        let (t0, log) = (Instant::now(), Log::default());
        let mut tasks = ask(&l, "A", 2, t0, &log);
        tasks.extend(ask(&l, "B", 1, t0, &log));
        settle().await;
        tokio::time::sleep(TICK / 2).await;
        l.hold_until(t0 + TICK * 7); // Retry-After while A's second waits for its turn
        join_all(tasks).await;
        assert_eq!(order_of(&log), "AAB");
        let times: Vec<Duration> = log.lock().unwrap().iter().map(|(_, at)| *at).collect();
        for (at, ticks) in times.into_iter().zip([0, 7, 8]) {
            due(at, TICK * ticks);
        }
    }
}
