//! NAXML 3.4 documents for the Conexxus back office, namespace
//! `http://www.naxml.org/POSBO/Vocabulary/2003-10-16`.
//!
//! Invariants:
//! - element names and order follow the reference skeleton (`shared/naxml/`) and public
//!   vendor samples; the licensed XSDs are not public;
//! - amounts are written from integer minor units with exactly two decimals (no floats);
//! - dates and times are the store's local time, as back offices expect;
//! - the same sale always renders to the same bytes (documents are re-sent on retry).

pub mod journal;

pub const NAMESPACE: &str = "http://www.naxml.org/POSBO/Vocabulary/2003-10-16";
pub const VERSION: &str = "3.4";
pub const VENDOR_NAME: &str = "posedge";

/// Minor units → NAXML decimal text (`321` → `3.21`).
pub fn amount(minor: i64) -> String {
    crate::money::format_minor(minor, 2)
}
