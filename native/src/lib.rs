//! scm-batch's native record engine. The engine itself ([`engine`], [`rules`]) is plain Rust,
//! tested by `cargo test`; the Python module (feature `python`) is a thin layer over it.

pub mod engine;
pub mod rules;
pub mod structure;

#[cfg(feature = "python")]
mod python;
