//! An ordered, bounded, parallel batch executor.
//!
//! [`run_ordered`] runs `work` on each planned item with `jobs` threads and hands the results
//! to `deliver` on the calling thread **in plan order**, so naming (collision suffixes) and
//! report order never depend on which thread finished first. At most `2 × jobs` items are in
//! flight or waiting, so memory stays bounded however long the plan. A panic in `work` becomes
//! an `Err` for that item; the batch goes on. When the [`Shutdown`] signal is triggered no
//! new item is started; those in flight are finished and delivered, and the function returns
//! how many were delivered.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, mpsc};

use crate::shutdown::Shutdown;

/// Runs `work` over `plan` with `jobs` threads, delivering results in order (module docs).
/// Returns the number of items delivered (`plan.len()` unless stopped).
pub fn run_ordered<P, T, W, D>(
    plan: &[P],
    jobs: usize,
    shutdown: &Shutdown,
    work: W,
    mut deliver: D,
) -> usize
where
    P: Sync,
    T: Send,
    W: Fn(&P) -> Result<T, String> + Sync,
    D: FnMut(&P, Result<T, String>),
{
    let n = plan.len();
    let jobs = jobs.clamp(1, n.max(1));
    let window = jobs.saturating_mul(2);
    let (job_tx, job_rx) = mpsc::channel::<usize>();
    let job_rx = Mutex::new(job_rx);
    let (res_tx, res_rx) = mpsc::channel::<(usize, Result<T, String>)>();
    let mut delivered = 0usize;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let res_tx = res_tx.clone();
            let (job_rx, work) = (&job_rx, &work);
            scope.spawn(move || {
                loop {
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(i) = next else { break };
                    let Some(p) = plan.get(i) else { break };
                    let result = catch_unwind(AssertUnwindSafe(|| work(p)))
                        .unwrap_or_else(|_| Err("internal error while sanitizing".to_owned()));
                    if res_tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        let mut pending = BTreeMap::new();
        let (mut sent, mut next) = (0usize, 0usize);
        while next < sent || (sent < n && !shutdown.is_triggered()) {
            while sent < n && sent < next.saturating_add(window) && !shutdown.is_triggered() {
                // Workers only stop when this sender is dropped, so this cannot fail.
                let _ = job_tx.send(sent);
                sent += 1;
            }
            let Some(result) = pending.remove(&next) else {
                match res_rx.recv() {
                    Ok((i, r)) => {
                        pending.insert(i, r);
                    }
                    Err(_) => break,
                }
                continue;
            };
            let Some(p) = plan.get(next) else { break };
            deliver(p, result);
            delivered += 1;
            next += 1;
        }
        drop(job_tx);
    });
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn results_come_back_in_plan_order() {
        let plan: Vec<u64> = (0..50).collect();
        let mut seen = Vec::new();
        let n = run_ordered(
            &plan,
            4,
            &Shutdown::new(),
            |&i| {
                // Later items finish first.
                std::thread::sleep(std::time::Duration::from_micros((50 - i) * 100));
                Ok(i * 2)
            },
            |&p, r| seen.push((p, r)),
        );
        assert_eq!(n, 50);
        let want: Vec<(u64, Result<u64, String>)> = (0..50).map(|i| (i, Ok(i * 2))).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_panic_is_an_error_for_that_item_only() {
        let plan = [1, 2, 3];
        let mut seen = Vec::new();
        run_ordered(
            &plan,
            2,
            &Shutdown::new(),
            |&i| {
                if i == 2 {
                    panic!("boom");
                }
                Ok(i)
            },
            |&p, r| seen.push((p, r.is_ok())),
        );
        assert_eq!(seen, [(1, true), (2, false), (3, true)]);
    }

    #[test]
    fn shutdown_stops_new_work_and_delivers_what_started() {
        let plan: Vec<usize> = (0..100).collect();
        let stop = Shutdown::new();
        let started = AtomicUsize::new(0);
        let mut delivered = Vec::new();
        let n = run_ordered(
            &plan,
            2,
            &stop,
            |&i| {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 3 {
                    stop.trigger();
                }
                Ok(i)
            },
            |&p, _| delivered.push(p),
        );
        assert!(n < 100, "stopped early: {n}");
        assert_eq!(n, delivered.len());
        // Everything that was started was delivered, in order, with no gap.
        assert_eq!(delivered, (0..n).collect::<Vec<_>>());
        assert_eq!(started.load(Ordering::SeqCst), n);
    }
}
