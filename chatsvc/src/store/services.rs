//! Service accounts' API keys (SHA-256 hashes only).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceKeyRow {
    pub id: u64,
    pub user_id: u64,
    pub scopes: Vec<String>,
    pub rate_per_sec: u32,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

super::operations! {
    services;
    write fn mark_bot(user_id: u64) -> ();
    write fn create(user_id: u64, key_hash: &[u8], scopes: &[String], rate_per_sec: u32, now: i64) -> ServiceKeyRow;
    /// The live key with this hash.
    read fn by_hash(key_hash: &[u8]) -> Option<ServiceKeyRow>;
    write fn revoke(id: u64, now: i64) -> bool;
    read fn list() -> Vec<ServiceKeyRow>;
}
