//! A bounded reader for ZIP-based Office packages and a writer for the rebuilt ones.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::error::SanitizeError;
use crate::limits::{Budget, LimitKind, read_capped};

/// One member of a package, fully expanded.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member name as stored (no leading `/`).
    pub name: String,
    /// The expanded bytes.
    pub bytes: Vec<u8>,
}

/// A package read into memory within the budget, members in their stored order.
#[derive(Debug, Clone, Default)]
pub struct Package {
    members: Vec<Member>,
    /// Lower-cased name → index (OPC part names compare case-insensitively).
    index: HashMap<String, usize>,
}

impl Package {
    /// Reads every member of the ZIP in `input`, charging the budget.
    pub fn read(input: &[u8], budget: &mut Budget) -> Result<Package, SanitizeError> {
        let mut archive = ZipArchive::new(Cursor::new(input))
            .map_err(|e| SanitizeError::Malformed(format!("not a readable ZIP package: {e}")))?;
        let max = usize::try_from(budget.limits().max_parts).unwrap_or(usize::MAX);
        if archive.len() > max {
            return Err(SanitizeError::limit(
                LimitKind::Parts,
                format!("package has {} members, over {max}", archive.len()),
            ));
        }
        let mut pkg = Package::default();
        for i in 0..archive.len() {
            budget.check_deadline()?;
            let file = archive.by_index(i).map_err(|e| match e {
                zip::result::ZipError::UnsupportedArchive(m) if m.contains("assword") => {
                    SanitizeError::encrypted(
                        crate::threats::OFFICE_ENCRYPTED,
                        "encrypted package member",
                    )
                }
                other => SanitizeError::Malformed(format!("package member {i}: {other}")),
            })?;
            if file.encrypted() {
                return Err(SanitizeError::encrypted(
                    crate::threats::OFFICE_ENCRYPTED,
                    "encrypted package member",
                ));
            }
            let name = file
                .name()
                .map_err(|e| SanitizeError::Malformed(format!("member name: {e}")))?
                .into_owned();
            if file.is_dir() {
                continue;
            }
            let name = check_name(&name)?;
            let compressed = file.compressed_size();
            // Never expand a member past what the ratio limit allows for its compressed size,
            // whatever its header claims: a bomb stops here, not at the item's decoded budget.
            let cap = compressed
                .saturating_mul(budget.limits().max_ratio)
                .max(64 * 1024)
                .saturating_add(1);
            let bytes = read_capped(file.take(cap), budget)?;
            if bytes.len() as u64 >= cap {
                return Err(SanitizeError::limit(
                    LimitKind::Ratio,
                    format!("package member {name} expands past the ratio limit"),
                ));
            }
            budget.check_ratio(compressed, bytes.len() as u64)?;
            let key = name.to_ascii_lowercase();
            if pkg.index.insert(key, pkg.members.len()).is_some() {
                return Err(SanitizeError::Malformed(format!(
                    "duplicate package member {name}"
                )));
            }
            pkg.members.push(Member { name, bytes });
        }
        Ok(pkg)
    }

    /// The members, in stored order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// A member by name, compared case-insensitively (a leading `/` is ignored).
    pub fn get(&self, name: &str) -> Option<&Member> {
        let key = name.trim_start_matches('/').to_ascii_lowercase();
        self.index.get(&key).and_then(|i| self.members.get(*i))
    }
}

/// Rejects names that could mean something else on extraction or to another reader.
fn check_name(name: &str) -> Result<String, SanitizeError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.split('/').any(|seg| seg == ".." || seg == ".");
    if bad {
        return Err(SanitizeError::Malformed(format!(
            "package member with an unsafe name: {name:?}"
        )));
    }
    Ok(name.to_owned())
}

/// Writes a fresh package: deflate everywhere except members written with
/// [`PackageWriter::stored`].
pub struct PackageWriter {
    zip: ZipWriter<Cursor<Vec<u8>>>,
}

impl Default for PackageWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PackageWriter {
    /// An empty package.
    pub fn new() -> PackageWriter {
        PackageWriter {
            zip: ZipWriter::new(Cursor::new(Vec::new())),
        }
    }

    fn add(
        &mut self,
        name: &str,
        bytes: &[u8],
        method: CompressionMethod,
    ) -> Result<(), SanitizeError> {
        let opts = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(zip::DateTime::default())
            .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
        self.zip
            .start_file(name, opts)
            .and_then(|()| self.zip.write_all(bytes).map_err(Into::into))
            .map_err(|e| SanitizeError::Internal(format!("writing package member {name}: {e}")))
    }

    /// Adds a deflated member.
    pub fn deflated(&mut self, name: &str, bytes: &[u8]) -> Result<(), SanitizeError> {
        self.add(name, bytes, CompressionMethod::Deflated)
    }

    /// Adds a stored (uncompressed) member (ODF's `mimetype`).
    pub fn stored(&mut self, name: &str, bytes: &[u8]) -> Result<(), SanitizeError> {
        self.add(name, bytes, CompressionMethod::Stored)
    }

    /// The finished ZIP.
    pub fn finish(self) -> Result<Vec<u8>, SanitizeError> {
        self.zip
            .finish()
            .map(Cursor::into_inner)
            .map_err(|e| SanitizeError::Internal(format!("finishing package: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    /// Fails unless `err` is the limit error of kind `want`.
    fn assert_limit(err: &SanitizeError, want: LimitKind) {
        assert!(
            matches!(err, SanitizeError::Limit { kind, .. } if *kind == want),
            "{err}"
        );
    }

    fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = PackageWriter::new();
        for (n, b) in members {
            w.deflated(n, b).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let z = zip_of(&[("a.xml", b"<a/>"), ("dir/B.xml", b"<b/>")]);
        let mut b = Budget::new(&Limits::default());
        let p = Package::read(&z, &mut b).unwrap();
        assert_eq!(p.members().len(), 2);
        assert_eq!(p.get("/dir/b.xml").unwrap().bytes, b"<b/>");
    }

    #[test]
    fn member_count_limit_trips() {
        let z = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
        let limits = Limits {
            max_parts: 2,
            ..Limits::default()
        };
        let err = Package::read(&z, &mut Budget::new(&limits)).unwrap_err();
        assert_limit(&err, LimitKind::Parts);
    }

    #[test]
    fn expanded_size_and_ratio_limits_trip() {
        let big = vec![b'a'; 1 << 20];
        let z = zip_of(&[("big.xml", &big)]);
        let err = Package::read(&z, &mut Budget::new(&Limits::default())).unwrap_err();
        assert_limit(&err, LimitKind::Ratio);
        let limits = Limits {
            max_decoded_bytes: 1000,
            ..Limits::default()
        };
        let err = Package::read(&z, &mut Budget::new(&limits)).unwrap_err();
        assert_limit(&err, LimitKind::DecodedBytes);
    }

    #[test]
    fn unsafe_names_and_duplicates_are_malformed() {
        let z = zip_of(&[("../evil.xml", b"x")]);
        assert!(matches!(
            Package::read(&z, &mut Budget::new(&Limits::default())),
            Err(SanitizeError::Malformed(_))
        ));
        let z = zip_of(&[("a.xml", b"x"), ("A.XML", b"y")]);
        assert!(matches!(
            Package::read(&z, &mut Budget::new(&Limits::default())),
            Err(SanitizeError::Malformed(_))
        ));
    }
}
