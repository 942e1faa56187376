//! The files source: inputs named on the command line, read from disk or standard input.
//!
//! - [`read_item`] / [`read_file`] read one input, at most one byte over the input limit (the
//!   core blocks anything larger; its report still gets the real size and SHA-256, computed by
//!   streaming the rest without keeping it).
//! - [`plan_batch`] turns file and directory arguments into the list of files of a batch, each
//!   with the output directory it goes to and its path relative to the argument it came from.
//!   Walks are sorted, so a batch always runs (and reports) in the same order.
//!
//! Walk rules (CONTRACT.md): symlinks inside an input tree (to files or directories) are
//! skipped with a message, never followed; so are FIFOs, sockets and devices (a read could
//! block or never end); the output directory is skipped if it lies inside an input (the CLI
//! refuses that case up front anyway).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// One input, read.
#[derive(Debug)]
pub struct Item {
    /// The bytes read (at most `max_input + 1`).
    pub bytes: Vec<u8>,
    /// The input's file name (names the output; never picks the sanitizer).
    pub name: Option<String>,
    /// How people see the input (its path as given, or `<stdin>`).
    pub display: String,
    /// The input's path relative to the argument it came from (for reports).
    pub rel_path: Option<String>,
    /// The input was longer than the policy's `max_input_bytes` and only a prefix was read
    /// (the core blocks it; a prefix is not worth quarantining).
    pub truncated: bool,
    /// Size and SHA-256 of the whole input when only a prefix was read.
    pub real: Option<(u64, String)>,
    /// Permission bits of the input file (`None` for standard input): the output gets no
    /// wider ones.
    pub mode: Option<u32>,
}

/// How an input path may be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Named on the command line: a symlink to a regular file is read (the user named it).
    Named,
    /// Found by a directory walk: a symlink is never followed.
    Walked,
}

/// Whether a path argument is `-` (standard input or output).
pub fn is_dash(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Reads an input file; see [`read_item`]. Only regular files are read: the type is checked
/// before opening (a FIFO is never opened, `/dev/zero` never read) and again on the opened
/// descriptor; the open itself never blocks (`O_NONBLOCK`) and, for walked files, never
/// follows a symlink swapped in after the walk (`O_NOFOLLOW`).
pub fn read_file(path: &Path, max_input: u64, follow: Follow) -> io::Result<Item> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let meta = match follow {
        Follow::Named => std::fs::metadata(path)?,
        Follow::Walked => std::fs::symlink_metadata(path)?,
    };
    let not_regular = |t: std::fs::FileType| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}, not a regular file; refused", describe_type(t)),
        )
    };
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if follow == Follow::Walked {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut item = read_item(file, name, path.display().to_string(), max_input)?;
    item.mode = Some(meta.permissions().mode() & 0o777);
    Ok(item)
}

/// A file type in words, for messages.
pub fn describe_type(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// Reads an input, at most one byte over the input limit: the core blocks it, and the report
/// gets the real size and hash, computed by streaming the rest without keeping it.
pub fn read_item(
    mut r: impl Read,
    name: Option<String>,
    display: String,
    max_input: u64,
) -> io::Result<Item> {
    let mut bytes = Vec::new();
    (&mut r)
        .take(max_input.saturating_add(1))
        .read_to_end(&mut bytes)?;
    let truncated = bytes.len() as u64 > max_input;
    let real = if truncated {
        Some(hash_rest(&bytes, &mut r)?)
    } else {
        None
    };
    Ok(Item {
        bytes,
        name,
        display,
        rel_path: None,
        truncated,
        real,
        mode: None,
    })
}

/// Size and hex SHA-256 of `prefix` followed by the rest of `rest`, without keeping it.
fn hash_rest(prefix: &[u8], rest: &mut impl Read) -> io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    let mut size = prefix.len() as u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        size = size.saturating_add(n as u64);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// One input file found for a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The file to read.
    pub path: PathBuf,
    /// The output directory it goes to.
    pub out_dir: PathBuf,
    /// Its path relative to the argument it came from (`sub/a.pdf`; a file argument: its name).
    pub rel_path: String,
    /// Named on the command line (a symlink is followed) or found by a walk (never followed).
    pub follow: Follow,
}

/// Something the walk skipped or could not list, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkNote {
    /// A symlink (to a file or a directory) inside an input tree: never followed.
    Symlink(PathBuf),
    /// A FIFO, socket or device (what it is, in words): reading it could block or never end.
    NotRegular(PathBuf, &'static str),
    /// A directory that could not be listed.
    Unlistable(PathBuf, String),
}

/// Lists the files of a batch: file arguments go straight into `output`; directories are
/// walked (sorted, OUTPUT itself skipped) keeping relative paths. What was skipped comes back
/// as notes, in walk order.
pub fn plan_batch(inputs: &[PathBuf], output: &Path) -> (Vec<Planned>, Vec<WalkNote>) {
    let output_canon = std::fs::canonicalize(output).ok();
    let mut plan = Vec::new();
    let mut notes = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            // Missing or unreadable files are reported when they are read.
            let rel_path = input.file_name().map_or_else(
                || input.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            plan.push(Planned {
                path: input.clone(),
                out_dir: output.to_owned(),
                rel_path,
                follow: Follow::Named,
            });
            continue;
        }
        let mut stack = vec![(input.clone(), output.to_owned(), String::new())];
        while let Some((dir, out_dir, rel)) = stack.pop() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(&dir) {
                Ok(it) => it.filter_map(Result::ok).map(|e| e.path()).collect(),
                Err(e) => {
                    notes.push(WalkNote::Unlistable(dir.clone(), e.to_string()));
                    continue;
                }
            };
            entries.sort();
            let mut subdirs = Vec::new();
            for path in entries {
                let Some(fname) = path.file_name().map(|n| n.to_owned()) else {
                    continue;
                };
                let rel_path = if rel.is_empty() {
                    fname.to_string_lossy().into_owned()
                } else {
                    format!("{rel}/{}", fname.to_string_lossy())
                };
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    // Vanished or unreadable: reported when it is read.
                    plan.push(Planned {
                        path,
                        out_dir: out_dir.clone(),
                        rel_path,
                        follow: Follow::Walked,
                    });
                    continue;
                };
                let ft = meta.file_type();
                if ft.is_symlink() {
                    notes.push(WalkNote::Symlink(path));
                } else if ft.is_dir() {
                    if output_canon.is_some() && std::fs::canonicalize(&path).ok() == output_canon {
                        continue;
                    }
                    // Windows would open the device, not the folder (`aux` → `aux_`).
                    let out_name = match fname.to_str() {
                        Some(n) if sanitizer_core::naming::is_reserved(n) => {
                            sanitizer_core::naming::avoid_reserved(n).into()
                        }
                        _ => fname.clone(),
                    };
                    subdirs.push((path, out_dir.join(out_name), rel_path));
                } else if !ft.is_file() {
                    notes.push(WalkNote::NotRegular(path, describe_type(ft)));
                } else {
                    plan.push(Planned {
                        path,
                        out_dir: out_dir.clone(),
                        rel_path,
                        follow: Follow::Walked,
                    });
                }
            }
            // Reverse so the stack visits subdirectories in sorted order.
            stack.extend(subdirs.into_iter().rev());
        }
    }
    (plan, notes)
}

/// Whether `output` is, or lies inside, one of the input directories (after resolving
/// symlinks and `..`; an output that does not exist yet is judged by its nearest existing
/// ancestor). Untrusted originals and their safe copies must never share a folder.
pub fn output_inside_input(inputs: &[PathBuf], output: &Path) -> Option<PathBuf> {
    let out = canonical_or_nearest(output)?;
    inputs
        .iter()
        .filter(|i| i.is_dir())
        .find(|i| std::fs::canonicalize(i).is_ok_and(|c| out.starts_with(&c)))
        .cloned()
}

/// The canonical form of `p`, or of its nearest existing ancestor joined with the rest.
fn canonical_or_nearest(p: &Path) -> Option<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = std::fs::canonicalize(cur) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Some(out);
        }
        rest.push(cur.file_name()?.to_owned());
        cur = cur.parent()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_is_sorted_relative_and_skips_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let inp = d.path().join("in");
        std::fs::create_dir_all(inp.join("sub")).unwrap();
        std::fs::write(inp.join("b.txt"), b"b").unwrap();
        std::fs::write(inp.join("a.txt"), b"a").unwrap();
        std::fs::write(inp.join("sub/c.txt"), b"c").unwrap();
        std::fs::write(d.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), inp.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(d.path(), inp.join("loop")).unwrap();
        let out = d.path().join("out");
        let (plan, notes) = plan_batch(std::slice::from_ref(&inp), &out);
        let rels: Vec<&str> = plan.iter().map(|p| p.rel_path.as_str()).collect();
        assert_eq!(rels, ["a.txt", "b.txt", "sub/c.txt"]);
        assert_eq!(plan[2].out_dir, out.join("sub"));
        assert_eq!(
            notes,
            [
                WalkNote::Symlink(inp.join("link.txt")),
                WalkNote::Symlink(inp.join("loop"))
            ]
        );
    }

    #[test]
    fn output_inside_an_input_is_found() {
        let d = tempfile::tempdir().unwrap();
        let inp = d.path().join("in");
        std::fs::create_dir_all(&inp).unwrap();
        let inputs = vec![inp.clone()];
        assert_eq!(output_inside_input(&inputs, &inp), Some(inp.clone()));
        assert_eq!(
            output_inside_input(&inputs, &inp.join("not/yet/there")),
            Some(inp.clone())
        );
        assert_eq!(
            output_inside_input(&inputs, &d.path().join("in/../in/x")),
            Some(inp.clone())
        );
        assert_eq!(output_inside_input(&inputs, &d.path().join("out")), None);
        assert_eq!(output_inside_input(&inputs, &d.path().join("in2")), None);
    }

    #[test]
    fn oversized_input_is_cut_but_hashed_whole() {
        let data = vec![7u8; 100];
        let item = read_item(&data[..], Some("x".into()), "x".into(), 10).unwrap();
        assert!(item.truncated);
        assert_eq!(item.bytes.len(), 11);
        let (size, sha) = item.real.unwrap();
        assert_eq!(size, 100);
        use sha2::{Digest, Sha256};
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
    }
}
