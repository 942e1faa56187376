//! The LibreOffice document converter lent to the core ([`sanitizer_core::Converter`]).
//!
//! Each conversion runs `soffice --headless --convert-to` in a fresh private directory (mode
//! 0700: the input, a throw-away user profile and the output), with an emptied environment (no
//! proxies, `HOME` inside the directory), in its own process group, which is killed when the
//! deadline passes. The directory is removed afterwards whatever happened.
//!
//! With [`LibreOffice::confined`] (what the CLI and daemon use), soffice is started through the
//! `mugai __confine` trampoline ([`crate::isolate::confine`]): no network namespace access, Landlock
//! limiting writes to the conversion directory, resource limits, and `nobody` instead of root.
//!
//! Failure modes: soffice missing or failing, no output written, output over the size cap, the
//! deadline passing: each is an `Err(String)` for the core to turn into "removed"/"blocked".

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sanitizer_core::Converter;

/// Input extensions the converter accepts.
const FROM: &[&str] = &[
    "doc", "xls", "ppt", "docx", "xlsx", "pptx", "odt", "ods", "odp", "rtf", "txt",
];
/// Output formats it produces.
const TO: &[&str] = &["docx", "xlsx", "pptx", "pdf", "odt", "ods", "odp", "doc"];

/// LibreOffice, run as an external process per conversion.
#[derive(Debug, Clone)]
pub struct LibreOffice {
    soffice: PathBuf,
    timeout: Duration,
    max_output: u64,
    confine: Option<PathBuf>,
    allow_without_landlock: bool,
}

impl LibreOffice {
    /// A converter running `soffice` (a path, or a name looked up in `PATH`), giving each
    /// conversion at most `timeout` (and never more than the caller's deadline).
    pub fn new(soffice: impl Into<PathBuf>, timeout: Duration) -> LibreOffice {
        LibreOffice {
            soffice: soffice.into(),
            timeout,
            max_output: 200 * 1024 * 1024,
            confine: None,
            allow_without_landlock: false,
        }
    }

    /// Runs every conversion confined by `mugai __confine` (`mugai` is the executable that
    /// provides the trampoline, normally `std::env::current_exe()`).
    pub fn confined(mut self, mugai: impl Into<PathBuf>) -> LibreOffice {
        self.confine = Some(mugai.into());
        self
    }

    /// Lets the confined converter run where Landlock cannot be enforced (configuration
    /// `pool.allow_without_landlock`); by default it refuses to start there.
    pub fn allow_without_landlock(mut self, allow: bool) -> LibreOffice {
        self.allow_without_landlock = allow;
        self
    }

    /// Caps the size of a converted output (default 200 MiB).
    pub fn with_max_output(mut self, bytes: u64) -> LibreOffice {
        self.max_output = bytes;
        self
    }

    /// The converter for `soffice` (policy `office.soffice`) when that binary exists, looked up
    /// in `PATH` when it is a bare name; `None` when LibreOffice is not installed.
    pub fn find(soffice: &str, timeout: Duration) -> Option<LibreOffice> {
        let path = Path::new(soffice);
        let found = if path.components().count() > 1 {
            path.is_file().then(|| path.to_path_buf())
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(soffice))
                    .find(|p| p.is_file())
            })
        }?;
        Some(LibreOffice::new(found, timeout))
    }

    fn run(
        &self,
        input: &[u8],
        from_ext: &str,
        to: &str,
        deadline: Instant,
    ) -> Result<Vec<u8>, String> {
        let dir = tempfile::Builder::new()
            .prefix("mugai-soffice-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        restrict(dir.path())?;
        let src = dir.path().join(format!("input.{from_ext}"));
        let out = dir.path().join("out");
        let profile = dir.path().join("profile");
        std::fs::write(&src, input).map_err(|e| format!("writing the input: {e}"))?;
        let log = std::fs::File::create(dir.path().join("soffice.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let mut cmd = helper_command(
            self.confine.as_deref(),
            &self.soffice,
            dir.path(),
            self.timeout.as_secs().saturating_mul(2).saturating_add(5),
            8 << 30,
            self.allow_without_landlock,
        )?;
        cmd.arg("--headless")
            .arg("--norestore")
            .arg("--nologo")
            .arg("--nodefault")
            .arg("--nolockcheck")
            .arg(format!(
                "-env:UserInstallation=file://{}",
                profile.display()
            ))
            .arg("--convert-to")
            .arg(to)
            .arg("--outdir")
            .arg(&out)
            .arg(&src)
            .stdout(Stdio::null())
            .stderr(log);
        let give_up = deadline.min(Instant::now() + self.timeout);
        let status = run_helper(&mut cmd, "LibreOffice", give_up, Duration::from_millis(25))?;
        let result = out.join(format!("input.{to}"));
        if std::fs::symlink_metadata(&result).is_err() {
            let tail = std::fs::read_to_string(dir.path().join("soffice.log")).unwrap_or_default();
            return Err(format!(
                "LibreOffice wrote no output ({status}): {}",
                tail.lines().last().unwrap_or("no message")
            ));
        }
        read_output(&result, self.output_owner(), self.max_output)
    }

    /// The user a converted output must belong to: `nobody` when the converter ran confined
    /// and we are root (the trampoline drops to it), else ourselves.
    fn output_owner(&self) -> u32 {
        let me = nix::unistd::geteuid();
        if self.confine.is_some() && me.is_root() {
            crate::isolate::confine::NOBODY
        } else {
            me.as_raw()
        }
    }
}

impl Converter for LibreOffice {
    fn convert(
        &self,
        input: &[u8],
        from_ext: &str,
        to: &str,
        deadline: Instant,
    ) -> Result<Vec<u8>, String> {
        if !FROM.contains(&from_ext) {
            return Err(format!("cannot convert from {from_ext:?}"));
        }
        if !TO.contains(&to) {
            return Err(format!("cannot convert to {to:?}"));
        }
        self.run(input, from_ext, to, deadline)
    }
}

/// Reads the converter's output at `path` without trusting the converter, which may have been
/// taken over by the document it converted: the file is opened without following a symlink
/// (`O_NOFOLLOW`) and without blocking on a FIFO (`O_NONBLOCK`), must be a regular file with a
/// single link owned by `owner` (checked on the opened descriptor, so it cannot be swapped in
/// between), and at most `cap` bytes are read (a file that grows past it, or `/dev/zero`, fails).
fn read_output(path: &Path, owner: u32, cap: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("opening the output (not a plain file?): {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("inspecting the output: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("converter output is not a regular file".into());
    }
    if meta.uid() != owner {
        return Err(format!(
            "converter output belongs to uid {}, not to the converter's user {owner}",
            meta.uid()
        ));
    }
    if meta.nlink() != 1 {
        return Err("converter output has other hard links".into());
    }
    if meta.len() > cap {
        return Err(format!(
            "converted output of {} bytes is over {cap}",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the output: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!("converted output grew over {cap} bytes"));
    }
    Ok(bytes)
}

/// Makes the conversion directory private (tempfile already creates it 0700 on Unix).
pub(crate) fn restrict(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod 0700: {e}"))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Kills the child's whole process group (soffice is a wrapper that starts soffice.bin).
pub(crate) fn kill_group(child: &mut std::process::Child) {
    // A system call, never a `kill` program looked up through PATH.
    if let Ok(pgid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A helper program (LibreOffice, Tesseract) as the daemon starts it: through the confinement
/// trampoline when `confine` names the `mugai` binary (Landlock: writes only in `dir`;
/// `cpu_secs` of CPU, `memory` bytes; `nobody` instead of root), else directly. Either way it
/// runs in `dir` with an emptied environment (`HOME` and `TMPDIR` in `dir`, a fixed `PATH`,
/// `C.UTF-8`), stdin closed, in a process group of its own ([`kill_group`]). The caller adds
/// the program's arguments and its stdout/stderr.
pub(crate) fn helper_command(
    confine: Option<&Path>,
    program: &Path,
    dir: &Path,
    cpu_secs: u64,
    memory: u64,
    allow_without_landlock: bool,
) -> Result<Command, String> {
    let mut cmd = match confine {
        Some(mugai) => {
            crate::isolate::confine::prepare_dir(dir)
                .map_err(|e| format!("preparing {}: {e}", dir.display()))?;
            let mut c = crate::isolate::confine::command(
                mugai,
                dir,
                cpu_secs,
                memory,
                allow_without_landlock,
            );
            c.arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("TMPDIR", dir)
        .stdin(Stdio::null());
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    Ok(cmd)
}

/// Starts `cmd` and waits for it until `give_up`, polling every `poll`; its whole process group
/// is killed afterwards whatever happened (a wrapper such as oosplash may leave children
/// behind). `what` names the program in errors.
pub(crate) fn run_helper(
    cmd: &mut Command,
    what: &str,
    give_up: Instant,
    poll: Duration,
) -> Result<std::process::ExitStatus, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= give_up => {
                kill_group(&mut child);
                return Err(format!("{what} timed out"));
            }
            Ok(None) => std::thread::sleep(poll),
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("waiting for {what}: {e}"));
            }
        }
    };
    kill_group(&mut child);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soffice() -> Option<LibreOffice> {
        let found = LibreOffice::find("soffice", Duration::from_secs(120));
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "soffice must be installed in CI"
            );
            eprintln!("NOTICE: soffice not installed; converter test skipped");
        }
        found
    }

    /// A .doc made by LibreOffice itself from text.
    fn tiny_doc(lo: &LibreOffice) -> Vec<u8> {
        make_with_soffice(
            lo,
            "t.txt",
            "変換テスト\nconverter test\n",
            "doc:MS Word 97",
        )
    }

    #[test]
    fn converts_a_doc_to_docx_and_times_out() {
        let Some(lo) = soffice() else { return };
        let doc = tiny_doc(&lo);
        assert!(doc.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]));
        let deadline = Instant::now() + Duration::from_secs(120);
        let docx = lo.convert(&doc, "doc", "docx", deadline).unwrap();
        assert!(docx.starts_with(b"PK\x03\x04"));
        let outcome = sanitizer_core::sanitize_file(&docx, Some("t.docx"), &Default::default());
        assert!(outcome.output.is_some(), "{:?}", outcome.report);

        // A deadline that has passed: the process is killed and the call fails.
        let started = Instant::now();
        let err = lo.convert(&doc, "doc", "docx", Instant::now()).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));

        assert!(lo.convert(&doc, "exe", "docx", deadline).is_err());
        assert!(lo.convert(&doc, "doc", "html", deadline).is_err());
        let small = lo.clone().with_max_output(10);
        assert!(
            small
                .convert(&doc, "doc", "docx", deadline)
                .unwrap_err()
                .contains("over")
        );
    }

    /// Runs soffice directly (not through the converter) to make a test input.
    fn make_with_soffice(lo: &LibreOffice, name: &str, text: &str, filter: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join(name);
        std::fs::write(&src, text).unwrap();
        let out = Command::new(&lo.soffice)
            .arg(format!(
                "-env:UserInstallation=file://{}",
                dir.path().join("p").display()
            ))
            .args([
                "--headless",
                "--norestore",
                "--convert-to",
                filter,
                "--outdir",
            ])
            .arg(dir.path())
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let ext = filter.split(':').next().unwrap();
        std::fs::read(src.with_extension(ext)).unwrap()
    }

    #[test]
    fn legacy_samples_are_converted_and_cleaned() {
        let Some(lo) = soffice() else { return };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/samples/office");
        let fodp = r#"<?xml version="1.0" encoding="UTF-8"?><office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.presentation"><office:body><office:presentation><draw:page draw:name="p1"><draw:frame svg:x="2cm" svg:y="2cm" svg:width="20cm" svg:height="3cm"><draw:text-box><text:p>旧形式のスライド</text:p></draw:text-box></draw:frame></draw:page></office:presentation></office:body></office:document>"#;
        let ppt = make_with_soffice(&lo, "s.fodp", fodp, "ppt:MS PowerPoint 97");
        let cases = [
            (
                "legacy.doc",
                std::fs::read(dir.join("legacy.doc")).unwrap(),
                "legacy.docx",
                "旧形式の文書",
            ),
            (
                "legacy_book.xls",
                std::fs::read(dir.join("legacy_book.xls")).unwrap(),
                "legacy_book.xlsx",
                "旧形式の表",
            ),
            ("slides.ppt", ppt, "slides.pptx", "旧形式のスライド"),
        ];
        for (name, input, out_name, text) in cases {
            let services = sanitizer_core::Services {
                converter: Some(&lo),
                fonts: None,
                archive_password: None,
                ocr: None,
            };
            let out = sanitizer_core::sanitize_file_with(
                &input,
                Some(name),
                &Default::default(),
                services,
            );
            let report = &out.report;
            assert_eq!(
                report.verdict,
                sanitizer_core::Verdict::Sanitized,
                "{report:#?}"
            );
            assert_eq!(
                report.items[0].action,
                sanitizer_core::Action::Converted,
                "{report:#?}"
            );
            assert!(report.threats().is_empty(), "{name}: {report:#?}");
            let file = out.output.unwrap();
            assert_eq!(file.name, out_name);
            assert_eq!(file.kind, sanitizer_core::Kind::Ooxml);
            // The converted, cleaned package still says what the original said.
            let mut z = zip::ZipArchive::new(std::io::Cursor::new(file.bytes.as_slice())).unwrap();
            let mut all = String::new();
            for i in 0..z.len() {
                use std::io::Read;
                let mut f = z.by_index(i).unwrap();
                let mut s = Vec::new();
                f.read_to_end(&mut s).unwrap();
                all.push_str(&String::from_utf8_lossy(&s));
            }
            assert!(all.contains(text), "{name}: {text} lost");
        }
    }

    /// A hostile program in LibreOffice's place: `action` runs with `$out` (the output
    /// directory) set, after it has been created.
    fn fake_converter(dir: &Path, action: &str) -> LibreOffice {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("soffice");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nout=\"\"\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --outdir ]; then out=\"$2\"; fi\n  shift\ndone\nmkdir -p \"$out\"\n{action}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        LibreOffice::new(script, Duration::from_secs(20))
    }

    #[test]
    fn hostile_converter_output_is_never_followed_or_read_past_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, b"TOP-SECRET-CONTENT").unwrap();
        let deadline = || Instant::now() + Duration::from_secs(20);
        let cases = [
            format!("ln -s {} \"$out/input.docx\"", secret.display()),
            "ln -s /dev/zero \"$out/input.docx\"".to_owned(),
            format!("ln {} \"$out/input.docx\"", secret.display()),
            "mkfifo \"$out/input.docx\"".to_owned(),
            "mkdir \"$out/input.docx\"".to_owned(),
        ];
        for action in &cases {
            let lo = fake_converter(d.path(), action);
            let started = Instant::now();
            let result = lo.convert(b"doc", "doc", "docx", deadline());
            assert!(result.is_err(), "{action}: {result:?}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{action}: hung"
            );
        }
        // A plain output is read, but never past the cap.
        let lo = fake_converter(d.path(), "printf 'PK-docx' > \"$out/input.docx\"");
        assert_eq!(
            lo.convert(b"doc", "doc", "docx", deadline()).unwrap(),
            b"PK-docx"
        );
        let lo = lo.with_max_output(3);
        assert!(
            lo.convert(b"doc", "doc", "docx", deadline())
                .unwrap_err()
                .contains("over")
        );
    }
}
