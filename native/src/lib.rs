//! scm-batch's native record engine. The engine itself ([`engine`], [`rules`]) is plain Rust,
//! tested by `cargo test`; the Python module (feature `python`) is a thin layer over it.

pub mod engine;
pub mod rules;

#[cfg(feature = "python")]
mod python;
