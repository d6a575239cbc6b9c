//! Hostile clients against a real chatd: strangers and signed-in users who
//! try to exhaust, mislead or out-wait the server (RELIABILITY.md,
//! "Hardening"). One test binary, one module per area.

mod content;
mod edge;
mod social;
mod store;
