//! Time as the gateway stamps it: wall-clock milliseconds for the stores
//! and sweeps, and a cheap coarse clock for idle stamps.

/// Wall-clock milliseconds since the Unix epoch: the stamp of associations
/// and of rate-limit sweeps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        // Seconds and milliseconds apart: no 128-bit division.
        .map_or(0, |d| d.as_secs() * 1000 + u64::from(d.subsec_millis()))
}

/// Milliseconds of a monotonic clock that is cheap to read and coarse (the
/// kernel's tick, a few milliseconds): for stamps taken on every read and
/// write and measured against timeouts of seconds, such as a connection's
/// idle time. Comparable only with itself.
#[cfg(target_os = "linux")]
pub fn coarse_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    // Both fields are non-negative for a monotonic clock.
    (t.tv_sec as u64) * 1000 + (t.tv_nsec as u64) / 1_000_000
}

/// Milliseconds of a monotonic clock (see the Linux version).
#[cfg(not(target_os = "linux"))]
pub fn coarse_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Whole seconds of the wall clock since the Unix epoch, read from the
/// kernel's coarse clock (the tick): for the `Date` of answers.
#[cfg(target_os = "linux")]
pub fn coarse_unix_secs() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    u64::try_from(t.tv_sec).unwrap_or(0)
}

/// Whole seconds of the wall clock since the Unix epoch.
#[cfg(not(target_os = "linux"))]
pub fn coarse_unix_secs() -> u64 {
    now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_moves_forward_with_time() {
        let before = coarse_ms();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let after = coarse_ms();
        // A tick or two of coarseness either way, never backwards.
        assert!(after >= before + 40, "{before} → {after}");
        assert!(after <= before + 5_000, "{before} → {after}");
    }

    #[test]
    fn the_coarse_wall_clock_is_the_wall_clock_in_seconds() {
        let coarse = coarse_unix_secs();
        let exact = now_ms() / 1000;
        assert!(coarse.abs_diff(exact) <= 1, "{coarse} against {exact}");
    }
}
