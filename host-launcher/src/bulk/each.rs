//! Bulk runs: one job per disk image, N at a time on worker threads, results handed back
//! on the calling thread as they complete (front-ends draw their own progress).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// The default parallelism: the number of cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work(i)` for every `i` in `0..count` on `jobs` threads (at least one) and calls
/// `done(i, result)` on the calling thread as each finishes, in completion order.
/// A failing job is just a result: the others still run.
///
/// ```
/// let mut got = vec![0; 10];
/// skiff::each::run_parallel(10, 3, |i| i * i, |i, r| got[i] = r);
/// assert_eq!(got[9], 81);
/// ```
pub fn run_parallel<T: Send>(
    count: usize,
    jobs: usize,
    work: impl Fn(usize) -> T + Sync,
    mut done: impl FnMut(usize, T),
) {
    let jobs = jobs.clamp(1, count.max(1));
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if tx.send((i, work(i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            done(i, r);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once() {
        let mut seen = [0u32; 37];
        let mut order = Vec::new();
        run_parallel(
            37,
            4,
            |i| if i % 5 == 0 { Err(i) } else { Ok(i * 2) },
            |i, r| {
                seen[i] += 1;
                order.push(i);
                assert_eq!(r.is_err(), i % 5 == 0);
            },
        );
        assert!(seen.iter().all(|&n| n == 1));
        assert_eq!(order.len(), 37);
        run_parallel(0, 0, |i| i, |_, _| panic!("no jobs"));
    }
}
