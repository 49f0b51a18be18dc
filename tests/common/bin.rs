//! Runs the `imgtag` binary as a user would, with a clean environment: no
//! AWS config, no user config, HOME (and so the index's cache dir) in a
//! temp dir.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use super::s3mem;

/// `imgtag ARGS --config <empty>` with a clean environment, ready to run
/// or spawn.
pub fn command(home: &Path, args: &[&str]) -> Command {
    let config = home.join("empty-config.toml");
    std::fs::write(&config, "").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgtag"));
    cmd.args(args)
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", s3mem::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3mem::SECRET_KEY)
        .env("AWS_REGION", s3mem::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

pub fn imgtag(home: &Path, args: &[&str]) -> Output {
    command(home, args).output().expect("run imgtag")
}

/// [`imgtag`] off the async runtime, so an in-process server keeps serving.
pub async fn imgtag_async(home: &Path, args: &[&str]) -> Output {
    let home = home.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        imgtag(&home, &refs)
    })
    .await
    .unwrap()
}

pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}
