//! The `banger` and `bangerd` binaries (thin wrappers in `src/bin/`) and their end-to-end tests
//! (`tests/`). The logic lives in the `banger-*` library crates.
