//! Accounts.

/// A user as stored (the password hash is fetched separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: u64,
    pub username: String,
    pub display_name: Option<String>,
    pub created_at: i64,
}

super::operations! {
    users;
    /// Inserts a user; `Conflict("username")` if the name is taken (any case).
    write fn insert(username: &str, password_hash: &str, now: i64) -> UserRow;
    /// Who may add the user to groups directly, if they chose (`anyone`,
    /// `friends` or `nobody`).
    read fn group_add_policy(id: u64) -> Option<String>;
    write fn set_group_add_policy(id: u64, policy: &str) -> ();
    read fn by_id(id: u64) -> Option<UserRow>;
    /// The user and password hash for a username (case-insensitive).
    read fn credentials(username: &str) -> Option<(UserRow, String)>;
    read fn by_username(username: &str) -> Option<UserRow>;
    write fn set_display_name(id: u64, display_name: Option<&str>) -> Option<UserRow>;
    read fn exists(id: u64) -> bool;
    /// Replaces a user's password hash; false if there is no such user.
    write fn set_password_hash(id: u64, hash: &str) -> bool;
}
