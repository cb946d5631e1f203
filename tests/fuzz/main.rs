//! Property-based fuzz targets (proptest, on the stable toolchain), one module each:
//!
//! - `scanners`: the request and reply scanners against redis-protocol as the oracle;
//! - `keyspecs`: the command key-spec interpreter on random argument vectors, and a
//!   sample against a real redis-server's `COMMAND GETKEYS`;
//! - `config`: the configuration loader on mutated TOML.
//!
//! `cargo test --test fuzz` runs a fixed budget with a fixed seed (deterministic, a
//! few seconds). A longer run with fresh random seeds, as long as you like:
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz` (README, "Fuzzing"). A
//! failure prints the shrunk input; make it a regression test next to the code it
//! broke.

mod config;
mod keyspecs;
mod scanners;

use proptest::test_runner::{Config, RngSeed};

/// The budget for a target: `ci_cases` cases from a fixed seed, unless `PROPTEST_CASES`
/// asks for a longer run (then from a random seed, or `PROPTEST_RNG_SEED`'s).
pub fn config(ci_cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = ci_cases;
        if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
            c.rng_seed = RngSeed::Fixed(13);
        }
    }
    c
}
