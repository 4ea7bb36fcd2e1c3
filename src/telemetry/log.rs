//! The process's log: its level (filter directives) and format (text or
//! JSON) can both change while it runs, on SIGHUP from `[log]` and from the
//! admin listener's `PUT /log/level`.
//!
//! Both sit behind `tracing_subscriber::reload` layers. The subscriber is
//! process-wide (tracing has one global dispatcher), so its handles are too:
//! the binary calls [`init`] once; a gateway run in-process without it (the
//! tests) has no handles, and a reload then warns that `[log]` changes need
//! a restart.

use crate::config::{LogConfig, LogFormat};
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Output = Box<dyn Layer<Filtered> + Send + Sync>;

/// The handles to the running subscriber's level and format.
pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
    output: reload::Handle<Output, Filtered>,
    /// The directives and format in force.
    state: Mutex<(String, LogFormat)>,
}

static CONTROL: OnceLock<LogControl> = OnceLock::new();

pub use crate::config::parse_log_level as parse_level;

fn output(format: LogFormat) -> Output {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    match format {
        LogFormat::Text => Box::new(tracing_subscriber::fmt::layer().with_ansi(ansi)),
        LogFormat::Json => Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        ),
    }
}

/// Installs the process's subscriber: `RUST_LOG` when set, else
/// `log.level`; the format of `log.format`. Once per process; later calls
/// do nothing.
pub fn init(config: &LogConfig) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| parse_level(v).is_ok())
        .unwrap_or_else(|| config.level.clone());
    let filter = parse_level(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, filter_handle) = reload::Layer::new(filter);
    let (out, output_handle) = reload::Layer::new(output(config.format));
    if tracing_subscriber::registry()
        .with(filter)
        .with(out)
        .try_init()
        .is_ok()
    {
        let _ = CONTROL.set(LogControl {
            filter: filter_handle,
            output: output_handle,
            state: Mutex::new((directives, config.format)),
        });
    }
}

/// The running subscriber's handles, when [`init`] installed it.
pub fn control() -> Option<&'static LogControl> {
    CONTROL.get()
}

impl LogControl {
    /// The directives in force.
    pub fn level(&self) -> String {
        self.state.lock().map(|s| s.0.clone()).unwrap_or_default()
    }

    /// Replaces the filter directives.
    pub fn set_level(&self, directives: &str) -> Result<(), String> {
        let filter = parse_level(directives)?;
        self.filter
            .reload(filter)
            .map_err(|e| format!("cannot change the level: {e}"))?;
        if let Ok(mut s) = self.state.lock() {
            s.0 = directives.trim().to_owned();
        }
        Ok(())
    }

    fn set_format(&self, format: LogFormat) -> Result<(), String> {
        self.output
            .reload(output(format))
            .map_err(|e| format!("cannot change the format: {e}"))?;
        if let Ok(mut s) = self.state.lock() {
            s.1 = format;
        }
        Ok(())
    }
}

/// Applies what changed in `[log]` from `old` to `new` (a level the file
/// did not change stays as `RUST_LOG` or `PUT /log/level` set it); the keys
/// that could not be applied.
pub fn reload(old: &LogConfig, new: &LogConfig) -> Vec<&'static str> {
    let mut not_applied = Vec::new();
    let control = control();
    if old.level != new.level {
        match control.map(|c| c.set_level(&new.level)) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "log.level not applied");
                not_applied.push("log.level");
            }
            None => not_applied.push("log.level"),
        }
    }
    if old.format != new.format {
        match control.map(|c| c.set_format(new.format)) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "log.format not applied");
                not_applied.push("log.format");
            }
            None => not_applied.push("log.format"),
        }
    }
    not_applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_are_checked() {
        assert!(parse_level("debug").is_ok());
        assert!(parse_level("ordergate=debug,warn").is_ok());
        assert!(parse_level("ordergate::access=off,info").is_ok());
        assert!(parse_level("").is_err());
        assert!(parse_level("ordergate=loud").is_err());
    }
}
