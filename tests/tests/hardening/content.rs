//! Files, names and edits that could mislead or exhaust.
