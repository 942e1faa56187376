//! Per-job cost of isolation: the same jobs in-process and through the worker pool.
//!
//! ```text
//! cargo build --release -p gateway-daemon --examples
//! target/release/examples/isolation_overhead target/release/mugai [MAILS] [PDF_DIR]
//! ```
//! Sanitizes MAILS small generated mails (default 1,000), and every PDF in PDF_DIR (repeated to
//! 100 jobs) if given: one thread in-process, then one thread through a one-worker pool, then two
//! threads through a two-worker pool. Prints jobs/s and the added milliseconds per job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gateway_daemon::isolate::pool::{Pool, PoolConfig};
use sanitizer_core::{Policy, sanitize_file, sanitize_mail};

#[derive(Clone)]
enum Job {
    Mail(Vec<u8>),
    File(Vec<u8>, String),
}

fn mails(n: usize) -> Vec<Job> {
    (0..n)
        .map(|i| {
            Job::Mail(
                format!(
                    "From: sender{i}@example.jp\r\nTo: staff@city.example.lg.jp\r\nSubject: =?UTF-8?B?6KaL56mN5pu4?= {i}\r\nDate: Thu, 26 Nov 2026 09:00:00 +0900\r\nMessage-ID: <{i}@example.jp>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>お世話になっております。見積書 {i} を送付します。</p><a href=\"https://example.jp/{i}\">link</a><script>x()</script></body></html>\r\n"
                )
                .into_bytes(),
            )
        })
        .collect()
}

fn pdfs(dir: Option<PathBuf>, n: usize) -> Vec<Job> {
    let Some(dir) = dir else { return Vec::new() };
    let files: Vec<Job> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pdf"))
        .map(|e| {
            Job::File(
                std::fs::read(e.path()).unwrap(),
                e.file_name().to_string_lossy().into_owned(),
            )
        })
        .collect();
    if files.is_empty() {
        return files;
    }
    files.iter().cycle().take(n).cloned().collect()
}

fn in_process(jobs: &[Job], policy: &Policy) -> f64 {
    let t = Instant::now();
    for j in jobs {
        match j {
            Job::Mail(m) => drop(sanitize_mail(m, policy)),
            Job::File(f, n) => drop(sanitize_file(f, Some(n), policy)),
        }
    }
    t.elapsed().as_secs_f64()
}

fn pooled(exe: &Path, workers: usize, threads: usize, jobs: &[Job], policy: &Policy) -> f64 {
    let mut cfg = PoolConfig::new(exe.to_path_buf());
    cfg.size = workers;
    let pool = Arc::new(Pool::new(cfg, None).unwrap());
    // Let the idle workers start before timing.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let jobs = Arc::new(jobs.to_vec());
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let (pool, jobs, policy) = (Arc::clone(&pool), Arc::clone(&jobs), policy.clone());
            std::thread::spawn(move || {
                for j in jobs.iter().skip(k).step_by(threads) {
                    match j {
                        Job::Mail(m) => drop(pool.sanitize_mail(m, &policy).unwrap()),
                        Job::File(f, n) => drop(pool.sanitize_file(f, Some(n), &policy).unwrap()),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    t.elapsed().as_secs_f64()
}

fn report(label: &str, jobs: &[Job], policy: &Policy, exe: &Path) {
    if jobs.is_empty() {
        return;
    }
    let n = jobs.len() as f64;
    let local = in_process(jobs, policy);
    let one = pooled(exe, 1, 1, jobs, policy);
    let two = pooled(exe, 2, 2, jobs, policy);
    println!("{label}: {} jobs", jobs.len());
    println!("  in-process, 1 thread     {:>9.1} jobs/s", n / local);
    println!(
        "  pool, 1 worker, 1 thread {:>9.1} jobs/s   (+{:.2} ms/job)",
        n / one,
        (one - local) * 1000.0 / n
    );
    println!(
        "  pool, 2 workers, 2 thr.  {:>9.1} jobs/s   ({:.2}x in-process 1 thread)",
        n / two,
        local / two
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let exe = PathBuf::from(
        args.next()
            .expect("usage: isolation_overhead MUGAI [MAILS] [PDF_DIR]"),
    );
    let n: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(1000);
    let pdf_dir = args.next().map(PathBuf::from);
    let policy = Policy::default();
    report("small mails", &mails(n), &policy, &exe);
    report("PDFs", &pdfs(pdf_dir, 100), &policy, &exe);
}
