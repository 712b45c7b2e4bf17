//! Who may do what in the console and its HTTP API: users, roles, API tokens.
//!
//! Three roles, each including the one below it: `viewer` reads, `operator` also runs
//! (trigger, pause, resume, cancel), `admin` also changes specs, apps, users and tokens.
//! A user or token may be limited to some apps; an empty list means every app.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// What a user or token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything it may see.
    Viewer,
    /// Also triggers, pauses, resumes and cancels.
    Operator,
    /// Also creates, edits and deletes apps and jobs, users and tokens.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Self; 3] = [Self::Viewer, Self::Operator, Self::Admin];

    /// `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("role `{s}` is not one of admin, operator, viewer"))
    }
}

/// Who is asking, and what they may touch: a logged-in user or an API token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// User name (for a token, the token's name).
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// The apps they may see and touch; empty for all.
    #[serde(default)]
    pub apps: Vec<String>,
}

impl Principal {
    /// Whether they may see or touch `app`.
    pub fn sees_app(&self, app: &str) -> bool {
        self.apps.is_empty() || self.apps.iter().any(|a| a == app)
    }
}

/// A console user as the API shows it (never with the password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Apps they are limited to; empty for all.
    #[serde(default)]
    pub apps: Vec<String>,
    /// When the user was created.
    pub created_at: Timestamp,
}

/// `POST /api/users`: creates a user or replaces one's role, apps and password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name.
    pub name: String,
    /// Password (at least 8 characters).
    pub password: String,
    /// Role.
    pub role: Role,
    /// Apps to limit the user to; empty for all.
    #[serde(default)]
    pub apps: Vec<String>,
}

/// An API token as the API shows it (never with its secret or hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Public id (the part before the `.` of the bearer string).
    pub id: String,
    /// What it is for.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Apps it is limited to; empty for all.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// `POST /api/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for.
    pub name: String,
    /// What it may do (at most the creator's role).
    pub role: Role,
    /// Apps to limit it to; empty for all.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Days until it expires; none for never.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// The answer to `POST /api/tokens`: the only time the secret is shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    /// The token.
    pub token: Token,
    /// `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// `POST /api/login`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn an_empty_app_list_means_every_app() {
        let all = Principal {
            name: "a".into(),
            role: Role::Viewer,
            apps: vec![],
        };
        let shop = Principal {
            apps: vec!["shop".into()],
            ..all.clone()
        };
        assert!(all.sees_app("billing"));
        assert!(shop.sees_app("shop"));
        assert!(!shop.sees_app("billing"));
    }
}
