//! Drives the PDF sanitizer through the public API until the `mugai` CLI is available:
//! `pdfsan [--mode rasterize|clean] [--dpi N] [--no-text-layer] INPUT OUTPUT` prints the report
//! as JSON on stderr and exits 3 when the file is blocked. `--no-text-layer` leaves out the
//! invisible text layer of rasterize mode (on by default).
//!
//! `pdfsan --render-only INPUT` renders every page with hayro on one thread at 150 DPI and
//! discards the pixels: the single-thread render baseline of `benches/pdf`.

use std::process::ExitCode;

use std::sync::Arc;

use sanitizer_core::{FontSource, Fonts, Policy, Services, sanitize_file_with};

/// Renders every page of `path` at 150 DPI on this thread; prints pages and milliseconds.
fn render_only(path: &str) -> ExitCode {
    let Ok(bytes) = std::fs::read(path) else {
        eprintln!("{path}: cannot read");
        return ExitCode::from(1);
    };
    let start = std::time::Instant::now();
    let data: hayro::hayro_syntax::PdfData = std::sync::Arc::new(bytes).into();
    let Ok(pdf) = hayro::hayro_syntax::Pdf::new(data) else {
        eprintln!("{path}: cannot parse");
        return ExitCode::from(1);
    };
    let cache = hayro::RenderCache::new();
    let settings = hayro::hayro_interpret::InterpreterSettings::default();
    let scale = 150.0 / 72.0;
    let mut n = 0usize;
    for page in pdf.pages().iter() {
        let pix = hayro::render(
            page,
            &cache,
            &settings,
            &hayro::RenderSettings::default(),
            &hayro::PixmapSettings {
                x_scale: scale,
                y_scale: scale,
                bg_color: hayro::vello_cpu::color::palette::css::WHITE,
            },
        );
        n += usize::from(pix.width() > 0);
    }
    println!("pages={n} ms={}", start.elapsed().as_millis());
    ExitCode::SUCCESS
}

const USAGE: &str = "usage: pdfsan [--mode rasterize|clean] [--dpi N] [--no-text-layer] INPUT OUTPUT\n       pdfsan --render-only INPUT";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--render-only")
        && let Some(path) = args.get(1)
    {
        return render_only(path);
    }
    if args.first().is_some_and(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mut toml = String::from("[pdf]\n");
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        if flag == "--no-text-layer" {
            toml.push_str("text_layer = false\n");
            continue;
        }
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
        eprintln!("{USAGE}");
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
    // The library reads no files: the caller lends the CJK fonts (Debian's Noto CJK here).
    let read = |p: &str| std::fs::read(p).ok().map(Arc::new);
    let fonts: Arc<dyn FontSource> = Arc::new(Fonts {
        cjk_sans: read("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
        cjk_serif: read("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
        svg: None,
    });
    let services = Services {
        converter: None,
        fonts: Some(&fonts),
        archive_password: None,
        ocr: None,
    };
    let outcome = sanitize_file_with(&bytes, Some(name), &policy, services);
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
