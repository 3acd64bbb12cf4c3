//! Integration tests, compiled as one crate. Each module is one area; helpers in `util`.
//! Everything runs against real parts: a real SQLite file in a temp dir, the real HTTP
//! server on 127.0.0.1:0 (in-process `Daemon::run`) or the real `posedge` binary.

mod util;

mod fake_port;
mod fake_stripe;
mod fake_upstream;
mod fuzz_checks;

mod backup;
mod cli;
mod clock;
mod conexxus;
mod config_errors;
mod contract;
mod crash;
mod disk;
mod fuzz_regressions;
mod lifecycle;
mod localstripe;
mod moto;
mod outbox;
mod payments;
mod sales_api;
mod schema;
mod security;
mod upgrade;
