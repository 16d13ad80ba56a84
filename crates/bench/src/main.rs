//! The `chat-bench` binary: finds the built binaries, starts them, runs the chosen scenarios and reports.

mod api;
mod args;
mod load;
mod processes;
mod report;
mod scenarios;
mod sse;
mod stats;
mod targets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use args::{Command, Options};
use processes::{MockSettings, RssSampler, ServerSettings};
use report::{Binary, IdleReport, Machine, Report};
use scenarios::Bench;

const BINARIES: [&str; 2] = ["chat-server", "mock-llm"];

/// Writes the tables (or the help) to stdout. Not `println!`: a closed pipe (`chat-bench --help | head`) is not worth
/// a panic.
fn say(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// The directory of the binaries under test, or a sentence saying how to build them.
fn bin_dir(options: &Options) -> Result<PathBuf, String> {
    let dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
            .ok_or("cannot tell where this executable is; pass --bin-dir")?,
    };
    let missing: Vec<&str> = BINARIES.iter().copied().filter(|bin| !dir.join(bin).is_file()).collect();
    if missing.is_empty() {
        // Absolute: the children run in their own working directory, where a relative path would not resolve.
        dir.canonicalize().map_err(|err| format!("{}: {err}", dir.display()))
    } else {
        Err(format!(
            "{} not found in {}: build them first with `cargo build --release -p chat-server -p mock-llm` (or \
             `cargo build --release --workspace --bins`), or name their directory with --bin-dir",
            missing.join(" and "),
            dir.display()
        ))
    }
}

/// Starts the mock and the server, runs every selected scenario, and returns the report with the scenarios that
/// failed (the figures of the others are still worth printing).
async fn run(options: Options, bin_dir: PathBuf) -> anyhow::Result<(Report, Vec<anyhow::Error>)> {
    let started = Instant::now();
    let load_average_start = processes::load_average();
    let binaries = BINARIES.iter().map(|bin| Binary::probe(&bin_dir.join(bin))).collect();
    let open_files_limit = processes::raise_open_files_limit();
    let workdir =
        tempfile::Builder::new().prefix("chat-bench-").tempdir().context("cannot create a temporary directory")?;
    let mock = processes::start_mock(
        &bin_dir,
        &MockSettings { latency_ms: options.mock_latency_ms, ..MockSettings::default() },
    )?;
    let database_url = match &options.database {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", workdir.path().join("bench.db").display()),
    };
    let settings = ServerSettings {
        database_url,
        dir: workdir.path().to_path_buf(),
        mock_base: mock.base.clone(),
        bcrypt_cost: options.bcrypt_cost,
        extra_env: options.server_env.clone(),
    };
    let mut server = processes::start_server(&bin_dir, &settings)?;
    let client = api::client()?;
    processes::wait_healthy(&client, &mut server).await?;
    eprintln!("chat-bench: mock-llm at {}, chat-server at {} (pid {})", mock.base, server.base, server.pid());
    let server_rss = RssSampler::start(server.pid());
    let mut bench = Bench {
        options: options.clone(),
        bin_dir,
        client,
        workdir,
        mock,
        server,
        server_rss,
        users: Vec::new(),
        open_files_limit,
        rows: Vec::new(),
        streams: None,
        idle: IdleReport { after_start_mb: None, after_load_mb: None },
        soak: None,
        warnings: Vec::new(),
    };
    let failures = run_scenarios(&mut bench).await;
    // Printed under the table too, so that a missing row is explained where it is missed.
    bench.warnings.extend(failures.iter().map(|err| format!("{err:#}")));
    bench.warnings.extend(contention(&bench.rows, options.database.is_some()));
    let targets =
        targets::evaluate(&options, &bench.rows, bench.streams.as_ref(), Some(&bench.idle), bench.soak.as_ref());
    let report = Report {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        git_commit: report::git_commit(),
        machine: Machine::probe(load_average_start),
        binaries,
        options,
        open_files_limit,
        elapsed_s: started.elapsed().as_secs_f64(),
        scenarios: bench.rows,
        streams: bench.streams,
        idle: measured(&bench.idle),
        soak: bench.soak,
        targets,
        warnings: bench.warnings,
    };
    Ok((report, failures))
}

/// Runs during which other processes of the machine used a noticeable share of the CPU: their figures include that
/// contention (a build running beside the bench, say).
fn contention(rows: &[report::Row], external_database: bool) -> Vec<String> {
    const NOTICEABLE_PERCENT: f64 = 20.0;
    let busy: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let others = row.others_cpu_percent.filter(|&p| p >= NOTICEABLE_PERCENT)?;
            Some(format!("{} · {} ({others:.0}%)", row.scenario, row.metric))
        })
        .collect();
    if busy.is_empty() {
        return Vec::new();
    }
    let database = if external_database { " (the database server's work is counted here too)" } else { "" };
    vec![format!(
        "other processes of this machine used CPU during these runs (percent of one core){database}, which their \
         figures include: {}",
        busy.join(", ")
    )]
}

/// The idle figures, when any was taken.
fn measured(idle: &IdleReport) -> Option<IdleReport> {
    (idle.after_start_mb.is_some() || idle.after_load_mb.is_some()).then(|| idle.clone())
}

/// The scenarios in the order they run: `idle` first and last, `direct` before everything compared with it.
const ORDER: [&str; 9] = ["idle", "direct", "chat", "stream", "read", "login", "streams", "soak", "idle (after load)"];

/// Runs the selected scenarios; one that fails is reported and the next one runs, unless the server is gone.
async fn run_scenarios(bench: &mut Bench) -> Vec<anyhow::Error> {
    let mut failures = Vec::new();
    let baseline_needed = ["direct", "chat", "stream", "login"].iter().any(|name| bench.options.runs(name));
    for name in ORDER {
        let selected = match name {
            "idle (after load)" => bench.options.runs("idle"),
            "direct" => baseline_needed,
            other => bench.options.runs(other),
        };
        if !selected {
            continue;
        }
        eprintln!("chat-bench: {name}...");
        let result = match name {
            "idle" => scenarios::idle::after_start(bench).await,
            "direct" => scenarios::direct::run(bench).await,
            "chat" => scenarios::chat::run(bench).await,
            "stream" => scenarios::stream::run(bench).await,
            "read" => scenarios::read::run(bench).await,
            "login" => scenarios::login::run(bench).await,
            "streams" => scenarios::streams::run(bench).await,
            "soak" => scenarios::soak::run(bench).await,
            _ => scenarios::idle::after_load(bench).await,
        };
        if let Err(err) = result {
            eprintln!("chat-bench: {name} failed: {err:#}");
            failures.push(err.context(format!("scenario {name} failed")));
            if let Err(dead) = bench.server.check_alive() {
                failures.push(dead);
                break;
            }
        }
    }
    failures
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match args::parse(&args) {
        Ok(Command::Run(options)) => *options,
        Ok(Command::Help) => {
            say(args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("chat-bench: {problem} (see chat-bench --help)");
            return ExitCode::from(2);
        }
    };
    let bin_dir = match bin_dir(&options) {
        Ok(dir) => dir,
        Err(problem) => {
            eprintln!("chat-bench: {problem}");
            return ExitCode::from(2);
        }
    };
    // `target/release/..` is `target`: the report lands in `target/bench/report.json`.
    let target_dir = bin_dir.parent().map_or_else(|| bin_dir.join(".."), Path::to_path_buf);
    let out = options.out.clone().unwrap_or_else(|| target_dir.join("bench").join("report.json"));
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(options.client_threads).enable_all().build() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("chat-bench: cannot start the load generator's runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
    let (report, failures) = match runtime.block_on(run(options, bin_dir)) {
        Ok(done) => done,
        Err(err) => {
            eprintln!("chat-bench: set-up failed: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // Requests still parked on the runtime (none after a clean run) must not keep the process alive.
    runtime.shutdown_background();
    say(&report.markdown());
    let mut code = ExitCode::SUCCESS;
    match report.write_json(&out) {
        Ok(()) => eprintln!("chat-bench: report written to {}", out.display()),
        Err(err) => {
            eprintln!("chat-bench: {err:#}");
            code = ExitCode::FAILURE;
        }
    }
    for err in &failures {
        eprintln!("chat-bench: failed: {err:#}");
        code = ExitCode::FAILURE;
    }
    code
}
