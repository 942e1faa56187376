//! Drives the PDF sanitizer through the public API until the `mugai` CLI is available:
//! `pdfsan [--mode rasterize|clean] [--dpi N] INPUT OUTPUT` prints the report as JSON on stderr
//! and exits 3 when the file is blocked.

use std::process::ExitCode;

use sanitizer_core::{Policy, sanitize_file};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut toml = String::from("[pdf]\n");
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        let value = if args.is_empty() {
            String::new()
        } else {
            args.remove(0)
        };
        match flag.as_str() {
            "--mode" => toml.push_str(&format!("mode = \"{value}\"\n")),
            "--dpi" => toml.push_str(&format!("dpi = {value}\n")),
            _ => {
                eprintln!("unknown flag {flag}");
                return ExitCode::from(2);
            }
        }
    }
    let [input, output] = args.as_slice() else {
        eprintln!("usage: pdfsan [--mode rasterize|clean] [--dpi N] INPUT OUTPUT");
        return ExitCode::from(2);
    };
    let policy = match Policy::from_toml(&toml) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let bytes = match std::fs::read(input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::from(1);
        }
    };
    let name = std::path::Path::new(input)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("input.pdf");
    let outcome = sanitize_file(&bytes, Some(name), &policy);
    eprintln!("{}", outcome.report.to_json_line());
    match outcome.output {
        Some(file) => match std::fs::write(output, file.bytes.as_slice()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{output}: {e}");
                ExitCode::from(1)
            }
        },
        None => ExitCode::from(3),
    }
}
