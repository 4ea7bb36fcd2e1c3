//! Readiness for systemd units of `Type=notify`: READY=1 once the listeners
//! are bound and the store is open, RELOADING=1 then READY=1 around a
//! reload, STOPPING=1 when shutdown begins. Without `NOTIFY_SOCKET` (not
//! started by systemd) every call does nothing.

use sd_notify::NotifyState;

pub fn ready() {
    send(&[NotifyState::Ready]);
}

pub fn reloading() {
    // systemd 253 and later expect the monotonic time with RELOADING=1.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
