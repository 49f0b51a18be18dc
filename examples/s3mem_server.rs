//! The tests' in-memory S3 server as a process, for the Lambda emulator
//! check in CI (`.ci/lambda-emulator.sh`): serves on 127.0.0.1 with the
//! tests' key pair, creates a bucket, puts files, prints the endpoint on
//! stdout and serves until it is killed, logging the `X-Amzn-Trace-Id`
//! header of requests to stderr.
//!
//! `cargo run --example s3mem_server -- BUCKET KEY=FILE...`

#[path = "../tests/common/s3mem.rs"]
mod s3mem;

use std::io::Write;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bucket = args
        .next()
        .ok_or("usage: s3mem_server BUCKET KEY=FILE...")?;
    let mem = s3mem::MemS3::new();
    mem.create_bucket(&bucket);
    for put in args {
        let (key, file) = put
            .split_once('=')
            .ok_or_else(|| format!("{put:?} is not KEY=FILE"))?;
        mem.insert(&bucket, key, std::fs::read(file)?);
    }
    let server = s3mem::serve(mem.clone()).await;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", server.endpoint())?;
    stdout.flush()?;
    // Serve until killed (the caller owns the process), reporting on
    // stderr each X-Amzn-Trace-Id the requests carry.
    let _server = server;
    let mut seen = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let ids = mem.trace_ids();
        for id in &ids[seen..] {
            eprintln!("x-amzn-trace-id: {id}");
        }
        seen = ids.len();
    }
}
