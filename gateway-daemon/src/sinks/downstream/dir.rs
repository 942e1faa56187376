//! The `dir` downstream: each message becomes a file, durable before the upstream gets 250.
//!
//! # On disk
//! `DIR/<stem>.eml` is the message exactly as given (CRLF line ends), and
//! `DIR/<stem>.envelope.json` its envelope:
//! `{"from": "...", "to": ["..."], "eight_bit": false, "smtputf8": false, "size": null,
//! "time": "RFC 3339", "message": "<stem>.eml"}`. The stem is
//! `<UTC time, microseconds>-<process id>-<counter>`, e.g.
//! `20260102T030405.123456Z-4242-000017`, unique within the process by the counter and
//! across processes by the id; a clash with an existing file (a recycled process id within
//! the same microsecond) takes the next counter value, since nothing is ever overwritten.
//! `DIR` is created (mode 0700) when missing; files are 0600.
//!
//! # Invariants and failure modes
//! Both files are written with [`write_atomic`] (temporary file, fsync, rename, fsync of the
//! directory), the envelope first: a visible `.eml` therefore always has its envelope. A crash
//! between the two leaves an envelope without a message (ignore it: no 250 was given, the
//! upstream retries); a failed message write removes its envelope. Hidden `.mugai-tmp-*` files
//! are leftovers of interrupted writes. Every write error is a `451` (the upstream keeps the
//! message and retries): `4.3.1` when the disk or quota is full, `4.3.0` otherwise, logged
//! as an error since an operator must act.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use super::{MailParams, transient};
use crate::sinks::atomic::{self, Access, Existing, write_atomic};
use crate::sources::smtp::session::Reply;

/// Attempts at a fresh name before giving up (each clash means another writer won it).
const NAME_ATTEMPTS: usize = 16;

/// Counter making names unique within this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory messages are written to.
#[derive(Debug)]
pub(crate) struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// Creates `dir` (0700) when missing; fails when it cannot be created.
    pub(crate) fn new(dir: &Path) -> anyhow::Result<DirSink> {
        anyhow::ensure!(
            !dir.as_os_str().is_empty(),
            "downstream.dir is empty (needed for kind = \"dir\")"
        );
        create_dir(dir).with_context(|| format!("downstream.dir {}", dir.display()))?;
        Ok(DirSink {
            dir: dir.to_path_buf(),
        })
    }
}

fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// A transaction for the `dir` downstream: the envelope, collected until the message comes.
#[derive(Debug)]
pub(crate) struct DirTransaction {
    sink: Arc<DirSink>,
    from: String,
    params: MailParams,
    to: Vec<String>,
}

impl DirTransaction {
    /// Nothing to open: MAIL is accepted.
    pub(crate) fn begin(
        sink: &Arc<DirSink>,
        from: &str,
        params: &MailParams,
    ) -> (Reply, Option<DirTransaction>) {
        let tx = DirTransaction {
            sink: Arc::clone(sink),
            from: from.to_owned(),
            params: *params,
            to: Vec::new(),
        };
        (Reply::new(250, "2.1.0 Ok"), Some(tx))
    }

    /// Records the recipient.
    pub(crate) fn rcpt(&mut self, to: &str) -> Reply {
        self.to.push(to.to_owned());
        Reply::new(250, "2.1.5 Ok")
    }

    /// Writes envelope and message durably (see the module docs); 250 only after both are.
    pub(crate) async fn data(self, message: &[u8]) -> Reply {
        let dir = self.sink.dir.clone();
        let message = message.to_vec();
        let envelope = Envelope {
            from: self.from,
            to: self.to,
            params: self.params,
        };
        let written = tokio::task::spawn_blocking(move || deliver(&dir, &envelope, &message))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("writer task failed: {e}"))));
        match written {
            Ok(path) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                tracing::debug!(file = %path.display(), "Message written to the delivery directory.");
                Reply::new(250, format!("2.0.0 Ok: written as {name}"))
            }
            Err(e) => {
                let full = atomic::is_transient(&e);
                tracing::error!(
                    dir = %self.sink.dir.display(),
                    error = %e,
                    "Cannot write a message to the delivery directory; the sender will retry."
                );
                let status = if full { "4.3.1" } else { "4.3.0" };
                transient(status, "downstream directory cannot take the message now")
            }
        }
    }
}

struct Envelope {
    from: String,
    to: Vec<String>,
    params: MailParams,
}

/// Writes `<stem>.envelope.json` then `<stem>.eml`; returns the path of the message.
fn deliver(dir: &Path, envelope: &Envelope, message: &[u8]) -> io::Result<PathBuf> {
    // The directory may have been removed since start (a cleanup gone wrong): recreate it.
    create_dir(dir)?;
    let time = jiff::Timestamp::now();
    for _ in 0..NAME_ATTEMPTS {
        let stem = stem(time);
        let eml = format!("{stem}.eml");
        let sidecar = format!("{stem}.envelope.json");
        let json = serde_json::json!({
            "from": envelope.from,
            "to": envelope.to,
            "eight_bit": envelope.params.eight_bit,
            "smtputf8": envelope.params.smtputf8,
            "size": envelope.params.size,
            "time": format!("{time:.6}"),
            "message": eml,
        });
        let mut json = serde_json::to_vec_pretty(&json).map_err(io::Error::other)?;
        json.push(b'\n');
        match write_atomic(dir, &sidecar, &json, Existing::Keep, Access::Private) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        match write_atomic(dir, &eml, message, Existing::Keep, Access::Private) {
            Ok(path) => return Ok(path),
            Err(e) => {
                // Best effort: an envelope without its message is harmless, but untidy.
                let _ = std::fs::remove_file(dir.join(&sidecar));
                if e.kind() != io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free file name in the delivery directory",
    ))
}

/// `20260102T030405.123456Z-<pid>-<counter>`.
fn stem(time: jiff::Timestamp) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let when = jiff::fmt::strtime::format("%Y%m%dT%H%M%S.%6fZ", time)
        .unwrap_or_else(|_| time.as_second().to_string());
    format!("{when}-{}-{n:06}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DownstreamKind, DownstreamSettings};
    use crate::sinks::downstream::Downstream;

    fn downstream(dir: &Path) -> Downstream {
        let settings = DownstreamSettings {
            kind: DownstreamKind::Dir,
            dir: dir.to_path_buf(),
            ..DownstreamSettings::default()
        };
        Downstream::new(&settings, "mugai.test").unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn message_and_envelope_are_written() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("new/delivered");
        let ds = downstream(&dir);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "created private");
        }
        let params = MailParams {
            eight_bit: true,
            smtputf8: false,
            size: Some(42),
        };
        let (reply, tx) = ds.begin("sender@example.jp", &params).await;
        assert_eq!(reply.code, 250);
        let mut tx = tx.unwrap();
        assert_eq!(tx.rcpt("a@example.lg.jp").await.code, 250);
        assert_eq!(tx.rcpt("b@example.lg.jp").await.code, 250);
        tx.keepalive().await;
        let message = "Subject: 見積\r\n\r\n.dot line\r\nbody\r\n".as_bytes();
        let reply = tx.data(message).await;
        assert_eq!(reply.code, 250, "{reply:?}");

        let names = entries(&dir);
        assert_eq!(names.len(), 2, "{names:?}");
        let eml = names.iter().find(|n| n.ends_with(".eml")).unwrap();
        let stem = eml.strip_suffix(".eml").unwrap();
        assert!(names.contains(&format!("{stem}.envelope.json")));
        assert!(reply.lines[0].contains(eml.as_str()));
        assert_eq!(std::fs::read(dir.join(eml)).unwrap(), message);

        let env: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{stem}.envelope.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(env["from"], "sender@example.jp");
        assert_eq!(
            env["to"],
            serde_json::json!(["a@example.lg.jp", "b@example.lg.jp"])
        );
        assert_eq!(env["eight_bit"], true);
        assert_eq!(env["size"], 42);
        assert_eq!(env["message"], eml.as_str());
        assert!(
            env["time"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for n in &names {
                let mode = std::fs::metadata(dir.join(n)).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{n}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_get_distinct_names() {
        let d = tempfile::tempdir().unwrap();
        let ds = downstream(d.path());
        let mut tasks = Vec::new();
        for i in 0..24 {
            let ds = ds.clone();
            tasks.push(tokio::spawn(async move {
                let (_, tx) = ds.begin("", &MailParams::default()).await;
                let mut tx = tx.unwrap();
                tx.rcpt(&format!("u{i}@example.lg.jp")).await;
                tx.data(format!("Subject: {i}\r\n\r\nmessage {i}\r\n").as_bytes())
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().code, 250);
        }
        let names = entries(d.path());
        let emls: Vec<&String> = names.iter().filter(|n| n.ends_with(".eml")).collect();
        assert_eq!(emls.len(), 24, "{names:?}");
        assert_eq!(
            names.len(),
            48,
            "one envelope each, no temp files: {names:?}"
        );
        let mut bodies: Vec<String> = emls
            .iter()
            .map(|n| String::from_utf8(std::fs::read(d.path().join(n)).unwrap()).unwrap())
            .collect();
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 24, "every message kept, none overwritten");
    }

    #[tokio::test]
    async fn unwritable_directory_is_451_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("delivered");
        let ds = downstream(&dir);
        let (_, tx) = ds.begin("a@example.jp", &MailParams::default()).await;
        let mut tx = tx.unwrap();
        tx.rcpt("b@example.lg.jp").await;
        // The directory is replaced by a file: no write can succeed (also as root).
        std::fs::remove_dir(&dir).unwrap();
        std::fs::write(&dir, b"not a directory").unwrap();
        let reply = tx.data(b"Subject: x\r\n\r\nx\r\n").await;
        assert_eq!(reply.code, 451, "{reply:?}");
        assert!(reply.lines[0].starts_with("4.3.0 "), "{reply:?}");
        assert_eq!(entries(d.path()), ["delivered"]);

        // A missing directory is created again at delivery.
        std::fs::remove_file(&dir).unwrap();
        let (_, tx) = ds.begin("a@example.jp", &MailParams::default()).await;
        let mut tx = tx.unwrap();
        tx.rcpt("b@example.lg.jp").await;
        assert_eq!(tx.data(b"x\r\n").await.code, 250);
        assert_eq!(entries(&dir).len(), 2);
    }

    #[test]
    fn a_directory_that_cannot_be_created_fails_at_start() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let settings = DownstreamSettings {
            kind: DownstreamKind::Dir,
            dir: file.join("sub"),
            ..DownstreamSettings::default()
        };
        assert!(Downstream::new(&settings, "mugai.test").is_err());
    }

    #[test]
    fn stems_sort_by_time_and_are_unique() {
        let t = jiff::Timestamp::from_second(1_767_323_045).unwrap();
        let a = stem(t);
        let b = stem(t);
        assert!(a.starts_with("20260102T030405.000000Z-"), "{a}");
        assert_ne!(a, b);
    }
}
