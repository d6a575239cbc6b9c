//! Search against the writer; what former members may still see.
