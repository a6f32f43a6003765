//! The wall clock in Unix seconds, for status timestamps. Host layer: the
//! pure core never reads a clock; times are passed in.

/// Now, in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
