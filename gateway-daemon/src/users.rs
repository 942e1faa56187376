//! The users store: who may use the HTTP API, with which role, and which mail addresses are
//! theirs. `mugai user ...` edits it; the HTTP API reads it on every request (so a removed
//! user or a new token takes effect at once, without a restart).
//!
//! ## On-disk format
//! One SQLite database at `http.users_file`, created owner-only (0600), journal mode WAL:
//! ```text
//! users(name TEXT PRIMARY KEY,             1 to 64 of [A-Za-z0-9._@-]
//!       role TEXT NOT NULL,                requester | approver | admin (actor::Role)
//!       password_hash TEXT,                argon2id PHC string ($argon2id$v=19$m=...), or NULL
//!       token_hash TEXT UNIQUE,            hex SHA-256 of the API token, or NULL
//!       created_at TEXT, updated_at TEXT)  RFC 3339
//! user_addresses(name, address,            the mail addresses a requester owns, ASCII
//!       PRIMARY KEY(name, address))        lower-cased; deleted with the user
//! ```
//!
//! ## Invariants
//! - No password or token is ever stored or logged in the clear. Passwords are argon2id
//!   (per-user random salt, default parameters); tokens are 32 random bytes from the system
//!   generator, shown once, stored as SHA-256 (a fast hash is enough for 256 random bits, and
//!   it lets a token be found without trying every user).
//! - Comparisons of secrets are constant-time (argon2's verifier; `subtle` for token hashes).
//!   A login for an unknown user still runs one argon2 verification, so timing does not tell
//!   which names exist.
//! - One token per user: `mugai user token NAME` replaces the previous one.
//!
//! ## Failure modes
//! Every error is a [`UserError`]: a bad name, role or password is `Invalid`; a missing user is
//! `NotFound`; anything from SQLite (a locked or damaged database) is `Store`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use rand::TryRng as _;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::actor::{Actor, Role};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// What went wrong with the users store.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A name, role, address or password that is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No such user.
    #[error("no user {0:?}")]
    NotFound(String),
    /// The user already exists.
    #[error("user {0:?} already exists")]
    Exists(String),
    /// The database could not be opened, read or written.
    #[error("users store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The password could not be hashed, or no random numbers were available.
    #[error("{0}")]
    Crypto(String),
}

/// A user as `mugai user list` shows it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    /// The name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// Their mail addresses.
    pub addresses: Vec<String>,
    /// Whether a password is set.
    pub has_password: bool,
    /// Whether an API token is set.
    pub has_token: bool,
}

/// The users store (see the module docs).
#[derive(Debug)]
pub struct UserStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Whether `name` is an acceptable user name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// The form an address is stored and compared in: trimmed, ASCII lower-cased.
pub fn normalize_address(a: &str) -> String {
    a.trim().to_ascii_lowercase()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A PHC hash of a password nobody has, verified against for unknown users.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            argon2::Argon2::default()
                .hash_password(b"mugai: no such user")
                .ok()
                .map(|h| h.to_string())
        })
        .as_deref()
}

fn check_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl UserStore {
    /// Opens the store at `path`, creating it (0600, with its schema) when missing.
    pub fn open(path: &Path) -> Result<UserStore, UserError> {
        let err = |source| UserError::Store {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| UserError::Invalid(format!("users store {}: {e}", dir.display())))?;
        }
        {
            // Create the file owner-only before SQLite sees it (SQLite gives its side files
            // the database's mode).
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| UserError::Invalid(format!("users store {}: {e}", path.display())))?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS users(
                 name TEXT PRIMARY KEY,
                 role TEXT NOT NULL,
                 password_hash TEXT,
                 token_hash TEXT UNIQUE,
                 created_at TEXT NOT NULL,
                 updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS user_addresses(
                 name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
                 address TEXT NOT NULL,
                 PRIMARY KEY(name, address));",
        )
        .map_err(err)?;
        Ok(UserStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, UserError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn).map_err(|source| UserError::Store {
            path: self.path.clone(),
            source,
        })
    }

    fn hash_password(password: &str) -> Result<String, UserError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(UserError::Invalid(format!(
                "a password needs at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| UserError::Crypto(format!("cannot hash the password: {e}")))
    }

    /// Adds a user with `role`, `addresses` and, optionally, a password.
    pub fn add(
        &self,
        name: &str,
        role: Role,
        addresses: &[String],
        password: Option<&str>,
    ) -> Result<(), UserError> {
        if !valid_name(name) {
            return Err(UserError::Invalid(format!(
                "user name {name:?}: 1 to 64 letters, digits, '.', '_', '@' or '-'"
            )));
        }
        let addresses: Vec<String> = addresses.iter().map(|a| normalize_address(a)).collect();
        if let Some(bad) = addresses
            .iter()
            .find(|a| !a.contains('@') || a.contains(char::is_whitespace))
        {
            return Err(UserError::Invalid(format!("{bad:?} is not a mail address")));
        }
        let hash = password.map(Self::hash_password).transpose()?;
        let now = crate::sinks::report::now_rfc3339();
        let added = self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO users(name, role, password_hash, token_hash, created_at,
                 updated_at) VALUES (?1, ?2, ?3, NULL, ?4, ?4)",
                params![name, role.as_str(), hash, now],
            )?;
            if n == 1 {
                for a in &addresses {
                    tx.execute(
                        "INSERT OR IGNORE INTO user_addresses(name, address) VALUES (?1, ?2)",
                        params![name, a],
                    )?;
                }
            }
            tx.commit()?;
            Ok(n == 1)
        })?;
        if added {
            Ok(())
        } else {
            Err(UserError::Exists(name.to_owned()))
        }
    }

    /// Sets (replaces) a user's password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        let hash = Self::hash_password(password)?;
        let now = crate::sinks::report::now_rfc3339();
        let n = self.with(|c| {
            c.execute(
                "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE name = ?1",
                params![name, hash, now],
            )
        })?;
        if n == 0 {
            return Err(UserError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Removes a user (and their addresses and token).
    pub fn remove(&self, name: &str) -> Result<(), UserError> {
        let n = self.with(|c| c.execute("DELETE FROM users WHERE name = ?1", params![name]))?;
        if n == 0 {
            return Err(UserError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Makes a new API token for `name`, replacing any previous one, and returns it: the only
    /// time it is ever seen in the clear.
    pub fn new_token(&self, name: &str) -> Result<String, UserError> {
        let mut raw = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut raw)
            .map_err(|e| UserError::Crypto(format!("no random numbers from the system: {e}")))?;
        let token = format!("mugai_{}", hex::encode(raw));
        let now = crate::sinks::report::now_rfc3339();
        let n = self.with(|c| {
            c.execute(
                "UPDATE users SET token_hash = ?2, updated_at = ?3 WHERE name = ?1",
                params![name, sha256_hex(token.as_bytes()), now],
            )
        })?;
        if n == 0 {
            return Err(UserError::NotFound(name.to_owned()));
        }
        Ok(token)
    }

    /// Every user, by name.
    pub fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        let rows = self.with(|c| {
            let mut st = c.prepare(
                "SELECT name, role, password_hash IS NOT NULL, token_hash IS NOT NULL
                 FROM users ORDER BY name",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (name, role, has_password, has_token) in rows {
            out.push(UserInfo {
                addresses: self.addresses(&name)?,
                role: self.parse_role(&name, &role)?,
                name,
                has_password,
                has_token,
            });
        }
        Ok(out)
    }

    fn parse_role(&self, name: &str, role: &str) -> Result<Role, UserError> {
        Role::parse(role).ok_or_else(|| {
            UserError::Invalid(format!(
                "users store {}: user {name:?} has an unknown role {role:?}",
                self.path.display()
            ))
        })
    }

    fn addresses(&self, name: &str) -> Result<Vec<String>, UserError> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT address FROM user_addresses WHERE name = ?1 ORDER BY address")?;
            st.query_map(params![name], |r| r.get::<_, String>(0))?
                .collect()
        })
    }

    fn actor(&self, name: String, role: &str) -> Result<Actor, UserError> {
        let role = self.parse_role(&name, role)?;
        let addresses = self.addresses(&name)?;
        Ok(Actor {
            name,
            role,
            addresses,
        })
    }

    /// The user `name` if `password` is theirs; `None` for a wrong password or an unknown
    /// user (indistinguishable, also in time). Slow on purpose (argon2id): call it off the
    /// async threads.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<Actor>, UserError> {
        let row = self.with(|c| {
            c.query_row(
                "SELECT role, password_hash FROM users WHERE name = ?1",
                params![name],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
            )
            .optional()
        })?;
        match row {
            Some((role, Some(hash))) => {
                if check_password(&hash, password) {
                    Ok(Some(self.actor(name.to_owned(), &role)?))
                } else {
                    Ok(None)
                }
            }
            _ => {
                if let Some(d) = dummy_hash() {
                    let _ = check_password(d, password);
                }
                Ok(None)
            }
        }
    }

    /// The user whose API token this is, if any.
    pub fn verify_token(&self, token: &str) -> Result<Option<Actor>, UserError> {
        let want = sha256_hex(token.as_bytes());
        let row = self.with(|c| {
            c.query_row(
                "SELECT name, role, token_hash FROM users WHERE token_hash = ?1",
                params![want],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
        })?;
        match row {
            Some((name, role, stored)) if bool::from(stored.as_bytes().ct_eq(want.as_bytes())) => {
                Ok(Some(self.actor(name, &role)?))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, UserStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = UserStore::open(&dir.path().join("sub/users.sqlite")).unwrap();
        (dir, s)
    }

    #[test]
    fn file_is_owner_only_and_reopens() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, s) = store();
        s.add("alice", Role::Requester, &[], None).unwrap();
        let p = dir.path().join("sub/users.sqlite");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        drop(s);
        let again = UserStore::open(&p).unwrap();
        assert_eq!(again.list().unwrap().len(), 1);
    }

    #[test]
    fn passwords_verify_and_are_not_stored_in_the_clear() {
        let (dir, s) = store();
        s.add(
            "alice",
            Role::Approver,
            &["Alice@City.Example.LG.JP ".into()],
            Some("correct horse battery"),
        )
        .unwrap();
        let a = s
            .verify_password("alice", "correct horse battery")
            .unwrap()
            .unwrap();
        assert_eq!(a.role, Role::Approver);
        assert_eq!(a.addresses, ["alice@city.example.lg.jp"]);
        assert!(s.verify_password("alice", "wrong horse").unwrap().is_none());
        assert!(
            s.verify_password("bob", "correct horse battery")
                .unwrap()
                .is_none()
        );
        drop(s);
        let raw = std::fs::read(dir.path().join("sub/users.sqlite")).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("correct horse"));
        assert!(text.contains("$argon2id$"));
    }

    #[test]
    fn passwd_replaces_and_short_passwords_are_refused() {
        let (_d, s) = store();
        s.add("bob", Role::Requester, &[], Some("first password"))
            .unwrap();
        assert!(matches!(
            s.set_password("bob", "short"),
            Err(UserError::Invalid(_))
        ));
        s.set_password("bob", "second password").unwrap();
        assert!(
            s.verify_password("bob", "first password")
                .unwrap()
                .is_none()
        );
        assert!(
            s.verify_password("bob", "second password")
                .unwrap()
                .is_some()
        );
        assert!(matches!(
            s.set_password("nobody", "long enough pw"),
            Err(UserError::NotFound(_))
        ));
    }

    #[test]
    fn tokens_are_shown_once_replaced_and_removed_with_the_user() {
        let (_d, s) = store();
        s.add("carol", Role::Admin, &[], None).unwrap();
        let t1 = s.new_token("carol").unwrap();
        assert!(t1.starts_with("mugai_") && t1.len() == 6 + 64);
        assert_eq!(s.verify_token(&t1).unwrap().unwrap().name, "carol");
        let t2 = s.new_token("carol").unwrap();
        assert_ne!(t1, t2);
        assert!(s.verify_token(&t1).unwrap().is_none(), "old token revoked");
        assert!(s.verify_token(&t2).unwrap().is_some());
        assert!(s.verify_token("mugai_00").unwrap().is_none());
        let listed = s.list().unwrap();
        assert!(listed[0].has_token && !listed[0].has_password);
        s.remove("carol").unwrap();
        assert!(s.verify_token(&t2).unwrap().is_none());
        assert!(matches!(s.remove("carol"), Err(UserError::NotFound(_))));
    }

    #[test]
    fn names_and_duplicates_are_checked() {
        let (_d, s) = store();
        assert!(matches!(
            s.add("a b", Role::Admin, &[], None),
            Err(UserError::Invalid(_))
        ));
        assert!(matches!(
            s.add("x", Role::Admin, &["not-an-address".into()], None),
            Err(UserError::Invalid(_))
        ));
        s.add("x", Role::Admin, &[], None).unwrap();
        assert!(matches!(
            s.add("x", Role::Requester, &[], None),
            Err(UserError::Exists(_))
        ));
    }
}
