//! The tests' in-memory S3 server as a process: for the Lambda emulator
//! check in CI (`.ci/lambda-emulator.sh`), and for driving the CLI or the
//! TUI by hand against a server that fails. Serves on 127.0.0.1 with the
//! tests' key pair (`AKIAIMGTAGTEST` / `imgtag-test-secret-key`), creates
//! a bucket, puts files, prints the endpoint on stdout and serves until it
//! is killed, logging the `X-Amzn-Trace-Id` header of requests to stderr.
//!
//! `cargo run --example s3mem_server -- [--faults SPEC] [--seed N] BUCKET KEY=FILE...`
//!
//! `--faults` puts the tests' fault proxy (`tests/common/faulty_proxy.rs`)
//! in front and prints its endpoint instead: SPEC is a comma-separated list
//! of `KIND=RATE`, each rate per 10,000 requests, kinds `internal` (500
//! InternalError), `slowdown` (503 SlowDown), `reset` (a GET's body cut off
//! halfway), `slow` (a body that trickles), `stall` (half a body, then
//! silence, then the connection closes) and `lost-put` (a PUT applied but
//! its reply dropped), e.g. `--faults internal=500,slowdown=500,lost-put=300`.
//! The faults injected so far are logged to stderr as they change.

#[path = "../tests/common/faulty_proxy.rs"]
mod faulty_proxy;
#[path = "../tests/common/s3mem.rs"]
mod s3mem;

use std::io::Write;

const USAGE: &str = "usage: s3mem_server [--faults KIND=RATE,...] [--seed N] BUCKET KEY=FILE...";

/// The command line: options first, then the bucket and its objects.
struct Args {
    rates: Option<faulty_proxy::Rates>,
    seed: u64,
    bucket: String,
    puts: Vec<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut rates, mut seed) = (None, 1);
    let bucket = loop {
        match args.next().as_deref() {
            Some("--faults") => rates = Some(parse_rates(&args.next().ok_or(USAGE)?)?),
            Some("--seed") => {
                seed = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seed takes a number")?
            }
            Some(bucket) if !bucket.starts_with("--") => break bucket.to_string(),
            _ => return Err(USAGE.into()),
        }
    };
    Ok(Args {
        rates,
        seed,
        bucket,
        puts: args.collect(),
    })
}

fn parse_rates(spec: &str) -> Result<faulty_proxy::Rates, String> {
    let mut rates = faulty_proxy::Rates::default();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (kind, rate) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KIND=RATE"))?;
        let rate: u32 = rate
            .parse()
            .ok()
            .filter(|r| *r <= 10_000)
            .ok_or_else(|| format!("{part:?}: the rate is per 10,000 requests"))?;
        let slot = match kind {
            "internal" => &mut rates.internal_error,
            "slowdown" => &mut rates.slow_down,
            "reset" => &mut rates.reset_body,
            "slow" => &mut rates.slow_body,
            "stall" => &mut rates.stall_body,
            "lost-put" => &mut rates.lost_put_reply,
            _ => return Err(format!("unknown fault {kind:?}; {USAGE}")),
        };
        *slot = rate;
    }
    Ok(rates)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keys are UTF-8 in S3: say which argument is not, rather than panic.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().map_err(|a| format!("{a:?} is not UTF-8")))
        .collect::<Result<_, _>>()?;
    let args = parse_args(args.into_iter())?;
    let mem = s3mem::MemS3::new();
    mem.create_bucket(&args.bucket);
    for put in &args.puts {
        let (key, file) = put
            .split_once('=')
            .ok_or_else(|| format!("{put:?} is not KEY=FILE"))?;
        mem.insert(&args.bucket, key, std::fs::read(file)?);
    }
    let server = s3mem::serve(mem.clone()).await;
    let proxy = match args.rates {
        Some(rates) => Some(faulty_proxy::FaultyProxy::start(server.addr, rates, args.seed).await),
        None => None,
    };
    let endpoint = proxy
        .as_ref()
        .map_or_else(|| server.endpoint(), |p| p.endpoint());
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{endpoint}")?;
    stdout.flush()?;
    // Serve until killed (the caller owns the process), reporting on
    // stderr each X-Amzn-Trace-Id the requests carry and the faults.
    let _server = server;
    let (mut seen, mut counts) = (0, faulty_proxy::Counts::default());
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let ids = mem.trace_ids();
        for id in &ids[seen..] {
            eprintln!("x-amzn-trace-id: {id}");
        }
        seen = ids.len();
        if let Some(now) = proxy.as_ref().map(|p| p.counts())
            && now != counts
        {
            eprintln!("faults: {now:?}");
            counts = now;
        }
    }
}
