//! tunec-runtime as a library: the parts of the runtime that tests and the `tunec` binary share.
//!
//! Today that is the data engine's chat templating and tokenization (`data`), the state journal
//! (`journal`) and the local executor of the data nodes (`run`); job nodes and the SageMaker target
//! will live here too. The command line itself is the binary
//! (`main.rs`), which keeps its modules private.

pub mod data;
pub mod journal;
pub mod run;
