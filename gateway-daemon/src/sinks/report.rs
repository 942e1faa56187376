//! The report log: one JSON object per item, appended (JSON Lines) and flushed after every
//! item, so the log is an audit trail that a crash or Ctrl-C never truncates or leaves behind
//! the outputs.
//!
//! Each line is the core's report (CONTRACT.md field names) plus additive fields the sources
//! know: `time` (RFC 3339, when the item was delivered), `input.path` and `output.path`
//! (relative to the argument or folder the item came from / went to).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sanitizer_core::report::Report;

use super::DeliverError;

/// Where report lines go.
#[derive(Debug)]
pub enum ReportLog {
    /// Standard output (`--report -`).
    Stdout,
    /// A file opened for appending.
    File {
        /// The open file (append mode).
        file: File,
        /// Its path, for messages.
        path: PathBuf,
    },
}

/// What the source knows about an item beyond the core's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The input's path relative to the argument it came from.
    pub input_path: Option<String>,
    /// The output's path as written (relative to the current directory or absolute, as the
    /// user gave the output).
    pub output_path: Option<String>,
}

impl ReportLog {
    /// Opens `path` for appending (created if missing, never truncated).
    pub fn append(path: &Path) -> io::Result<ReportLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(ReportLog::File {
            file,
            path: path.to_owned(),
        })
    }

    /// Appends one report line and flushes it (to the file system; see [`ReportLog::sync`]).
    pub fn write(&mut self, report: &Report, cx: &Context) -> Result<(), DeliverError> {
        let mut line = line(report, cx);
        line.push('\n');
        match self {
            ReportLog::Stdout => {
                let mut so = io::stdout().lock();
                so.write_all(line.as_bytes())
                    .and_then(|()| so.flush())
                    .map_err(|e| DeliverError::io("standard output", &e))
            }
            // One write call per line on an O_APPEND file: lines from several writers never
            // interleave.
            ReportLog::File { file, path } => file
                .write_all(line.as_bytes())
                .map_err(|e| DeliverError::io(format!("report file {}", path.display()), &e)),
        }
    }

    /// Makes the lines written so far durable (fsync); call at the end of a run.
    pub fn sync(&mut self) -> Result<(), DeliverError> {
        match self {
            ReportLog::Stdout => Ok(()),
            ReportLog::File { file, path } => file
                .sync_all()
                .map_err(|e| DeliverError::io(format!("report file {}", path.display()), &e)),
        }
    }
}

/// The current time in RFC 3339 (UTC, milliseconds).
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    format!("{:.3}", now)
}

/// The report as one JSON line with the additive fields set.
pub fn line(report: &Report, cx: &Context) -> String {
    let Ok(mut v) = serde_json::to_value(report) else {
        return report.to_json_line();
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("time".into(), serde_json::Value::String(now_rfc3339()));
        for (key, path) in [("input", &cx.input_path), ("output", &cx.output_path)] {
            if let (Some(p), Some(info)) = (path, obj.get_mut(key).and_then(|v| v.as_object_mut()))
            {
                info.insert("path".into(), serde_json::Value::String(p.clone()));
            }
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanitizer_core::{Policy, sanitize_file};

    #[test]
    fn lines_are_appended_with_time_and_paths() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("r.jsonl");
        let out = sanitize_file(b"<p>x</p>", Some("a.html"), &Policy::default());
        let cx = Context {
            input_path: Some("sub/a.html".into()),
            output_path: Some("out/sub/a.txt".into()),
        };
        for _ in 0..2 {
            let mut log = ReportLog::append(&path).unwrap();
            log.write(&out.report, &cx).unwrap();
            log.sync().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v["input"]["path"], "sub/a.html");
        assert_eq!(v["output"]["path"], "out/sub/a.txt");
        assert_eq!(v["id"], out.report.id.as_str());
        let t = v["time"].as_str().unwrap();
        assert!(t.parse::<jiff::Timestamp>().is_ok(), "{t}");
    }
}
