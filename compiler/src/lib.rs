//! tunec-compiler: `.tune` text in; a checked program, diagnostics, estimates and job graphs out.
//!
//! The crate is pure: no file, network or clock access. Everything it needs from the outside (the
//! files of a local model directory) comes through the [`World`] trait, which the runtime
//! implements with the file system and tests implement in memory.

pub mod catalog;
pub mod check;
pub mod diagnostics;
pub mod driver;
pub mod estimate;
pub mod format;
pub mod lower;
pub mod render;
pub mod secret;
pub mod syntax;
pub mod target;

pub use check::{NoFiles, Override, Program, World};
pub use driver::{check, check_with, Checked};
