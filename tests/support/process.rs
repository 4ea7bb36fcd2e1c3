//! The real binary as a child process: started with a configuration file,
//! its log lines handed over, killed when the test ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_ordergate");

/// Starts the binary and waits for its "serving" line; returns the child and
/// the address it listens on.
pub fn start(config: &std::path::Path) -> (Running, String) {
    let (child, addr, _lines) = start_logged(config);
    (child, addr)
}

/// Like [`start`], and hands over every line the binary prints.
pub fn start_logged(
    config: &std::path::Path,
) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    start_with_env(config, &[])
}

/// Like [`start_logged`], with more environment variables.
pub fn start_with_env(
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    let mut command = Command::new(BIN);
    command.envs(env.iter().copied());
    start_command(command, config)
}

/// Like [`start_logged`], with `cwd` as the working directory.
pub fn start_in(
    config: &std::path::Path,
    cwd: &std::path::Path,
) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    let mut command = Command::new(BIN);
    command.current_dir(cwd);
    start_command(command, config)
}

fn start_command(
    mut command: Command,
    config: &std::path::Path,
) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    let mut child = command
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("ordergate is serving") {
                let listen = line.split("listen").nth(1).map(|r| {
                    r.trim_start_matches(['=', '"', ':'])
                        .split(['"', ' ', ','])
                        .next()
                        .unwrap_or("")
                        .to_owned()
                });
                let _ = tx.send(listen.unwrap_or_default());
            }
            let _ = lines_tx.send(line);
        }
    });
    let child = Running(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the gateway started");
    (child, addr, lines)
}

/// A gateway process that is killed when the test ends, passed or not.
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to 10 s for a log line containing `text`.
pub fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line with `{text}`");
}

pub fn hangup(child: &Running) {
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
}

/// The admin listener's address, from its "serving" log line.
pub fn admin_addr(lines: &std::sync::mpsc::Receiver<String>) -> String {
    let line = wait_for_line(lines, "admin endpoints are serving");
    line.split("listen=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_owned()
}

/// Sends SIGTERM.
pub fn terminate(child: &Running) {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
}

/// Runs `ordergate check` on `text` as a configuration file: whether it
/// passed, and what it printed, with the file's path written `FILE`.
pub fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checked.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(path.to_str().unwrap(), "FILE");
    (out.status.success(), stdout)
}
