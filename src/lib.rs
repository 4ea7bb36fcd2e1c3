pub mod config;
pub mod owners;
