//! Build information: the git commit the binary is built from, for
//! `ordergate --version` and the `ordergate_build_info` metric, as
//! `BUILD_GIT_COMMIT`. Taken from `GIT_COMMIT` when set (a container build
//! without `.git`), else from git, else "unknown". (Not an `ORDERGATE_`
//! name: cargo also sets it when running tests, and those are overrides.)

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    let given = std::env::var("GIT_COMMIT").ok().filter(|c| !c.is_empty());
    let commit = given.or_else(|| {
        let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
        // Built again when HEAD moves to another commit.
        for path in [
            git(&["rev-parse", "--git-path", "HEAD"]),
            git(&["symbolic-ref", "-q", "HEAD"])
                .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        ]
        .into_iter()
        .flatten()
        {
            println!("cargo:rerun-if-changed={path}");
        }
        Some(commit)
    });
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
}
