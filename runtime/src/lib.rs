//! tunec-runtime as a library: the parts of the runtime that tests and the `tunec` binary share.
//!
//! Today that is the data engine's chat templating and tokenization (`data`) and the state journal
//! (`journal`); the executor and the targets will live here too. The command line itself is the binary
//! (`main.rs`), which keeps its modules private.

pub mod data;
pub mod journal;
