//! The error-code pages, embedded by `build.rs` from docs/errors/.

include!(concat!(env!("OUT_DIR"), "/error_pages.rs"));

/// The page of a code, by its short name.
pub(crate) fn page(short_name: &str) -> Option<&'static str> {
    PAGES.iter().find(|(name, _)| *name == short_name).map(|(_, text)| *text)
}
