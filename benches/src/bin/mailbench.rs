//! Single-threaded throughput table for the mail path.
//!
//! `cargo run --release -p mugai-benches --bin mailbench [-- ITERATIONS]` prints, per sample:
//! messages/s, MB/s and the ratio to mail-parser's parse alone (the floor), for
//! `sanitize_mail`, for the HTML converter on the decoded body, and for html2text on the same
//! body (the reference). `-- --dump` prints both converters' text for the newsletter instead.

#![allow(
    clippy::unwrap_used,
    reason = "a measuring tool over generated samples"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use mugai_benches::{attachments_mail, html_body, newsletter_mail};
use sanitizer_core::Policy;
use sanitizer_core::formats::html::html_to_text;

/// CPU time of this thread (user + system), from `/proc/thread-self/stat`, in clock ticks of
/// 10 ms (Linux's USER_HZ is 100 on every architecture we run on). `None` off Linux.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut f = after.split_whitespace().skip(11);
    Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
}

/// Time per call of `f`: CPU time of this thread when it can be read (the machine is shared,
/// wall time counts other processes' turns), else wall time. Runs at least `iterations`
/// calls and at least 2 s of CPU time, so the 10 ms tick is ≤ 0.5 % of the total.
fn time(iterations: u32, mut f: impl FnMut()) -> Duration {
    f(); // warm up
    let start = Instant::now();
    let cpu0 = cpu_ticks();
    let mut done = 0u32;
    loop {
        f();
        done += 1;
        if done >= iterations {
            let cpu = cpu_ticks().zip(cpu0).map(|(b, a)| b.saturating_sub(a));
            match cpu {
                Some(t) if t >= 200 => return Duration::from_millis(t * 10) / done,
                None if start.elapsed() >= Duration::from_secs(2) => return start.elapsed() / done,
                _ => {}
            }
        }
    }
}

fn row(label: &str, per: Duration, bytes: usize, floor: Duration) {
    let secs = per.as_secs_f64();
    println!(
        "| {label:<34} | {:>10.1} | {:>9.3} | {:>9.1} | {:>7.2} |",
        1.0 / secs,
        bytes as f64 / secs / 1e6,
        secs * 1e6,
        secs / floor.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let policy = Policy::default();
    let news = newsletter_mail();
    let body = html_body(&news).unwrap();
    if args.iter().any(|a| a == "--dump") {
        println!("{}", html_to_text(&body, &policy).text);
        println!("=========== html2text ===========");
        println!(
            "{}",
            html2text::config::plain_no_decorate()
                .string_from_read(body.as_bytes(), 100_000)
                .unwrap()
        );
        return;
    }
    if args.iter().any(|a| a == "--profile") {
        // A loop of the converter alone, for `perf record`.
        for _ in 0..2000 {
            black_box(html_to_text(black_box(&body), &policy));
        }
        return;
    }
    if args.iter().any(|a| a == "--big") {
        // Linearity check: unclosed <div> with text, 2.5 / 5 / 10 MB.
        for mb in [2.5f64, 5.0, 10.0] {
            let html = "<div>x".repeat((mb * 1024.0 * 1024.0 / 6.0) as usize);
            let t = time(1, || {
                black_box(html_to_text(black_box(&html), &policy));
            });
            println!("{mb:>5} MB of <div>x: {:>8.1} ms", t.as_secs_f64() * 1e3);
        }
        return;
    }
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let parser = mail_parser::MessageParser::default();

    println!(
        "| {:<34} | {:>10} | {:>9} | {:>9} | {:>7} |",
        "", "msg/s", "MB/s", "µs/msg", "× parse"
    );
    println!(
        "|{:-<36}|{:->12}|{:->11}|{:->11}|{:->9}|",
        "", "", "", "", ""
    );
    println!(
        "| newsletter mail: {} bytes, HTML body {} bytes (UTF-8) |",
        news.len(),
        body.len()
    );
    let floor = time(n, || {
        black_box(parser.parse(black_box(&news[..])));
    });
    row("mail-parser parse alone (floor)", floor, news.len(), floor);
    let t = time(n, || {
        black_box(sanitizer_core::sanitize_mail(black_box(&news), &policy));
    });
    row("sanitize_mail", t, news.len(), floor);
    let t = time(n, || {
        black_box(html_to_text(black_box(&body), &policy));
    });
    row("html_to_text (body only)", t, body.len(), floor);
    let t = time(n, || {
        let msg = parser.parse(black_box(&news[..])).unwrap();
        let html = msg.body_html(0).unwrap();
        black_box(html_to_text(&html, &policy));
    });
    row("parse + html_to_text", t, news.len(), floor);
    let t = time(3, || {
        black_box(
            html2text::config::plain_no_decorate()
                .string_from_read(black_box(body.as_bytes()), 100_000)
                .unwrap(),
        );
    });
    row("html2text plain_no_decorate (body)", t, body.len(), floor);
    let t = time(3, || {
        black_box(html2text::from_read(black_box(body.as_bytes()), 80).unwrap());
    });
    row("html2text width 80 (body)", t, body.len(), floor);
    // Where html2text spends its time: DOM building, render tree, layout.
    let cfg = html2text::config::plain_no_decorate();
    let t = time(3, || {
        black_box(cfg.parse_html(black_box(body.as_bytes())).unwrap());
    });
    row("  html2text stage 1: DOM", t, body.len(), floor);
    let t = time(3, || {
        let dom = cfg.parse_html(black_box(body.as_bytes())).unwrap();
        black_box(cfg.dom_to_render_tree(&dom).unwrap());
    });
    row("  html2text stage 1+2: render tree", t, body.len(), floor);

    let big = attachments_mail();
    println!("| attachments mail: {} bytes |", big.len());
    let m = 3;
    let floor = time(m, || {
        black_box(parser.parse(black_box(&big[..])));
    });
    row("mail-parser parse alone (floor)", floor, big.len(), floor);
    let t = time(m, || {
        black_box(sanitizer_core::sanitize_mail(black_box(&big), &policy));
    });
    row("sanitize_mail", t, big.len(), floor);
}
