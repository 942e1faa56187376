//! Operational logs for `mugai serve`: human or JSON lines, to standard error or a file that
//! SIGHUP reopens (for logrotate's `postrotate kill -HUP`).
//!
//! Logs never carry message bodies, and at INFO no full addresses: the audit log is where
//! envelopes are recorded, under its own access rules.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, LogSettings};

/// The log destination; cloning shares it.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: Option<PathBuf>,
    file: Arc<Mutex<Option<File>>>,
}

impl LogFile {
    fn open(path: Option<PathBuf>) -> io::Result<LogFile> {
        let file = match &path {
            Some(p) => Some(open_append(p)?),
            None => None,
        };
        Ok(LogFile {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Reopens the file (after it was rotated); standard error needs nothing.
    pub fn reopen(&self) -> io::Result<()> {
        let Some(p) = &self.path else {
            return Ok(());
        };
        let new = open_append(p)?;
        if let Ok(mut f) = self.file.lock() {
            *f = Some(new);
        }
        Ok(())
    }
}

fn open_append(p: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(p)
}

/// One log event's writer.
#[derive(Debug)]
pub struct LogWriter(Arc<Mutex<Option<File>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(f) => f.write(buf),
                None => io::stderr().write(buf),
            },
            Err(_) => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter(Arc::clone(&self.file))
    }
}

/// Installs the global subscriber for `settings`; returns the handle SIGHUP reopens.
pub fn init(settings: &LogSettings) -> anyhow::Result<LogFile> {
    let filter: Targets = settings
        .level
        .parse()
        .with_context(|| format!("log.level {:?} is not a valid filter", settings.level))?;
    let path = (!settings.file.as_os_str().is_empty()).then(|| settings.file.clone());
    let file =
        LogFile::open(path).with_context(|| format!("log.file {}", settings.file.display()))?;
    let ansi = settings.file.as_os_str().is_empty() && io::IsTerminal::is_terminal(&io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(file.clone())
        .with_ansi(ansi);
    let installed = match settings.format {
        LogFormat::Human => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().with_filter(filter))
            .try_init(),
    };
    // Already installed (tests run several servers in one process): keep the first.
    drop(installed);
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_a_rotated_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mugai.log");
        let log = LogFile::open(Some(p.clone())).unwrap();
        log.make_writer().write_all(b"one\n").unwrap();
        std::fs::rename(&p, d.path().join("mugai.log.1")).unwrap();
        log.make_writer().write_all(b"two\n").unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("mugai.log.1")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
    }
}
