//! Who is acting: a signed-in user of the HTTP API or console, or the operator at the command
//! line. Authentication (`crate::sources::http` and the users store) produces an [`Actor`];
//! the release flow and the audit log only read it.

use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Staff: see the items addressed to them and ask for their release.
    Requester,
    /// 上長 or the IT section: approve or refuse release requests (never their own).
    Approver,
    /// Everything, including users, originals and purges.
    Admin,
}

impl Role {
    /// The name used in files, the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "requester" => Some(Role::Requester),
            "approver" => Some(Role::Approver),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role may approve or refuse a release (someone else's request).
    pub fn may_decide(self) -> bool {
        matches!(self, Role::Approver | Role::Admin)
    }
}

/// Someone acting, as authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user name (`cli:<unix user>` for the operator at the command line).
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Mail addresses whose items a requester may see (their own mailbox, aliases).
    pub addresses: Vec<String>,
}

impl Actor {
    /// The operator at the command line: an admin named after the Unix user.
    pub fn operator() -> Actor {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "root".into());
        Actor {
            name: format!("cli:{user}"),
            role: Role::Admin,
            addresses: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_only_approvers_decide() {
        for r in [Role::Requester, Role::Approver, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
        assert!(!Role::Requester.may_decide());
        assert!(Role::Approver.may_decide() && Role::Admin.may_decide());
        assert!(Actor::operator().name.starts_with("cli:"));
    }
}
