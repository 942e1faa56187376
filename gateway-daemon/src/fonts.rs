//! Fonts lent to the core: the configured files, read lazily, once per process.
//!
//! The core reads no files; [`FileFonts`] is the daemon's [`FontSource`]. A worker builds one
//! from the configured paths before its sandbox goes on (Landlock then allows reading just
//! those font directories), and the fonts are read the first time a document needs them —
//! a mail never pays for the 20–40 MB of CJK fonts. Files larger than [`MAX_FONT_BYTES`] or not
//! regular files are not read (the document then carries `pdf.font_missing`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use sanitizer_core::{FontSource, fontdb};

use crate::config::Host;

/// Largest font file read (the Noto CJK collections are 19–27 MB).
pub const MAX_FONT_BYTES: u64 = 64 * 1024 * 1024;

/// The configured font files, read on first use.
#[derive(Debug, Default)]
pub struct FileFonts {
    sans: PathBuf,
    serif: PathBuf,
    svg_dir: PathBuf,
    sans_bytes: OnceLock<Option<Arc<Vec<u8>>>>,
    serif_bytes: OnceLock<Option<Arc<Vec<u8>>>>,
    svg_db: OnceLock<Option<Arc<fontdb::Database>>>,
}

impl FileFonts {
    /// Fonts from the host paths of the configuration.
    pub fn new(host: &Host) -> FileFonts {
        FileFonts {
            sans: host.cjk_font.clone(),
            serif: host.cjk_serif_font.clone(),
            svg_dir: host.svg_font_dir.clone(),
            ..FileFonts::default()
        }
    }
}

/// A regular file of at most [`MAX_FONT_BYTES`], or nothing.
fn read_font(path: &Path) -> Option<Arc<Vec<u8>>> {
    if path.as_os_str().is_empty() {
        return None;
    }
    let f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_FONT_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(MAX_FONT_BYTES)
        .read_to_end(&mut bytes)
        .ok()
        .map(|_| Arc::new(bytes))
}

impl FontSource for FileFonts {
    fn cjk(&self, serif: bool) -> Option<Arc<Vec<u8>>> {
        if serif
            && let Some(b) = self
                .serif_bytes
                .get_or_init(|| read_font(&self.serif))
                .clone()
        {
            return Some(b);
        }
        self.sans_bytes
            .get_or_init(|| read_font(&self.sans))
            .clone()
    }

    fn svg_fonts(&self) -> Option<Arc<fontdb::Database>> {
        self.svg_db
            .get_or_init(|| {
                if !self.svg_dir.is_dir() {
                    return None;
                }
                let mut db = fontdb::Database::new();
                db.load_fonts_dir(&self.svg_dir);
                // Generic families resolve to Japanese-capable faces when they are installed.
                db.set_sans_serif_family("Noto Sans CJK JP");
                db.set_serif_family("Noto Serif CJK JP");
                db.set_monospace_family("Noto Sans Mono CJK JP");
                Some(Arc::new(db))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_oversized_files_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let host = Host {
            cjk_font: d.path().join("missing.ttc"),
            cjk_serif_font: d.path().to_owned(),
            svg_font_dir: d.path().join("nope"),
            ..Host::default()
        };
        let f = FileFonts::new(&host);
        assert!(f.cjk(false).is_none());
        assert!(f.cjk(true).is_none());
        assert!(f.svg_fonts().is_none());
    }

    #[test]
    fn serif_falls_back_to_sans() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("sans.ttc"), b"sans bytes").unwrap();
        let host = Host {
            cjk_font: d.path().join("sans.ttc"),
            cjk_serif_font: "".into(),
            svg_font_dir: d.path().to_owned(),
            ..Host::default()
        };
        let f = FileFonts::new(&host);
        assert_eq!(f.cjk(true).unwrap().as_slice(), b"sans bytes");
        assert!(f.svg_fonts().is_some());
    }
}
