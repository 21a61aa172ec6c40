//! tunec-runtime as a library: the parts of the runtime that tests and the `tunec` binary share.
//!
//! Today that is the script bundle the jobs run (`bundle`), the data engine's chat templating and
//! tokenization (`data`), the state journal (`journal`) and the estimate-versus-actual ledger in it
//! (`ledger`), the local executor (`run`: data nodes
//! and the entry scripts of job nodes), the language server (`lsp`) and the file-system `World`
//! (`world`); the SageMaker target will live here too. The command line
//! itself is the binary (`main.rs`), which keeps its modules private.

pub mod bundle;
pub mod data;
pub mod journal;
pub mod ledger;
pub mod lsp;
pub mod run;
pub mod world;
