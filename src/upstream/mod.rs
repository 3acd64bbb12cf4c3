//! Talking to the outside world: one HTTP client, and per upstream the request building and
//! response classification.

pub mod conexxus;
pub mod http;
pub mod stripe;
