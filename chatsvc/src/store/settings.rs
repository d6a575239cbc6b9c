//! A user's own settings of a conversation: mute, pinned to the top of
//! the list, archived.

/// Muted forever: `muted_until` at the largest time.
pub const FOREVER: i64 = i64::MAX;

/// One user's settings of one conversation (all unset: no row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SettingsRow {
    /// Unix ms; [`FOREVER`]. Past times read back as they were stored.
    pub muted_until: Option<i64>,
    /// When the user pinned it to the top of their list.
    pub pinned_at: Option<i64>,
    /// Archived, and no message came since.
    pub archived: bool,
}

super::operations! {
    settings;
    /// The user's settings of a conversation (the default when none).
    read fn get(user_id: u64, conversation_id: u64) -> SettingsRow;
    /// Stores them. `archived` holds until the conversation's next message:
    /// the store keeps the conversation's newest seq with it.
    write fn put(user_id: u64, conversation_id: u64, settings: &SettingsRow) -> ();
    /// How many conversations the user has pinned.
    read fn pinned_count(user_id: u64) -> usize;
}
