//! The wall clock, for status timestamps and generation names: the one
//! place that reads it. Host layer: the
//! pure core never reads a clock; times are passed in.

/// Now, in Unix seconds (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    since_epoch().as_secs()
}

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn unix_now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// The wall-clock time of the monotonic instant `t` (in the past), in Unix
/// milliseconds.
pub(crate) fn unix_ms_at(t: std::time::Instant) -> u64 {
    unix_now_ms().saturating_sub(t.elapsed().as_millis() as u64)
}

/// Time since 1970 (zero if the clock is before it).
pub(crate) fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in Unix nanoseconds: what a file stamp's times are compared with
/// ([`crate::core::stamp::settled`]).
pub(crate) fn unix_now_ns() -> i64 {
    i64::try_from(since_epoch().as_nanos()).unwrap_or(i64::MAX)
}
