//! Signed-in users who flood, lock others out, or detect blocks.
