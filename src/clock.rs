//! Wall-clock time as the stores and sweeps keep it.

/// Wall-clock milliseconds since the Unix epoch: the stamp of associations
/// and of rate-limit sweeps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
