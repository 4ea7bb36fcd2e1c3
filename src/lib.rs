pub mod config;
pub mod owners;
pub mod proxy;
pub mod shorthand;
pub mod body;
pub mod faults;
pub mod telemetry;
