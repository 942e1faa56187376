//! Criterion benchmarks of the mail path: `sanitize_mail` next to mail-parser's parse alone
//! (the floor) on the same input, plus the HTML converters on the newsletter body.
//!
//! `cargo bench -p mugai-benches --bench mail`

#![allow(clippy::unwrap_used, reason = "benchmarks over generated samples")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mugai_benches::{attachments_mail, html_body, newsletter_mail};
use sanitizer_core::Policy;
use sanitizer_core::formats::html::html_to_text;

fn newsletter(c: &mut Criterion) {
    let policy = Policy::default();
    let mail = newsletter_mail();
    let body = html_body(&mail).unwrap();
    let parser = mail_parser::MessageParser::default();

    let mut g = c.benchmark_group("newsletter_50k_iso2022jp");
    g.throughput(Throughput::Bytes(mail.len() as u64));
    g.bench_function("parse_alone", |b| {
        b.iter(|| parser.parse(black_box(&mail[..])).is_some())
    });
    g.bench_function("sanitize_mail", |b| {
        b.iter(|| sanitizer_core::sanitize_mail(black_box(&mail), &policy))
    });
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("html_to_text_body", |b| {
        b.iter(|| html_to_text(black_box(&body), &policy))
    });
    g.sample_size(20);
    g.bench_function("html2text_plain_body", |b| {
        b.iter(|| {
            html2text::config::plain_no_decorate()
                .string_from_read(black_box(body.as_bytes()), 100_000)
                .unwrap()
        })
    });
    g.finish();
}

fn attachments(c: &mut Criterion) {
    let policy = Policy::default();
    let mail = attachments_mail();
    let parser = mail_parser::MessageParser::default();
    let mut g = c.benchmark_group("attachments_5m");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(mail.len() as u64));
    g.bench_function("parse_alone", |b| {
        b.iter(|| parser.parse(black_box(&mail[..])).is_some())
    });
    g.bench_function("sanitize_mail", |b| {
        b.iter(|| sanitizer_core::sanitize_mail(black_box(&mail), &policy))
    });
    g.finish();
}

criterion_group!(benches, newsletter, attachments);
criterion_main!(benches);
