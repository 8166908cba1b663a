//! Messages exchanged between `banger` and `bangerd`.
