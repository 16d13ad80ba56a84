//! The command line: flags, their defaults (and `--quick`'s), and the usage text.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub const USAGE: &str = "\
chat-bench: starts mock-llm and chat-server (built beforehand) and measures chat-server's latency, throughput and
memory against mock-llm's own, in one run. Prints a Markdown table and writes a JSON report.

usage: cargo build --release --workspace --bins && target/release/chat-bench [options]

  --quick                  short runs (3 s, 1,000 streams, 2 s ramp, 60 s soak): the whole run takes under two
                           minutes (soak aside, which --quick does not select)
  --scenarios LIST         comma-separated subset of: direct, chat, stream, read, login, streams, idle, soak
                           (default all but soak; direct runs whenever chat, stream or login does: it is their
                           baseline; soak, minutes of mixed load watching the server's memory, only when named)
  --duration SECS          measured seconds per run (default 10; quick 3)
  --warmup SECS            seconds of the same load before each run, not measured (default 1)
  --rate N                 chat's fixed rate, req/s (default 1000)
  --stream-rate N          stream's fixed rate, req/s (default 500)
  --list-rate N            fixed rate of the read scenario's GETs, req/s (default 1000)
  --login-chat-rate N      chat's fixed rate with and without the login flood, req/s (default 500)
  --soak-duration SECS     length of the soak (default 600; quick 60)
  --soak-rate N            soak's fixed rate of mixed requests, req/s (default 200)
  --concurrency N          closed-loop workers at saturation (default 32)
  --streams N              concurrent slow streams (default 10000; quick 1000)
  --ramp SECS              the streams are started evenly over this time (default 5; quick 2)
  --mock-latency-ms N      mock-llm's delay before each answer (default 0)
  --client-threads N       load generator threads (default 1, leaving the other cores to the server and the mock)
  --database URL           a fresh PostgreSQL database (postgres://...) instead of temporary SQLite files
  --bcrypt-cost N          the server's BCRYPT_COST (default 10)
  --server-env KEY=VALUE   extra environment for both chat-servers (repeatable; wins over the bench's own)
  --bin-dir DIR            where chat-server and mock-llm are (default: this executable's directory)
  --out PATH               the JSON report (default: <bin-dir>/../bench/report.json, i.e. target/bench/report.json)
  -h, --help               this text

Exit status: 0 when the run completed (whether or not targets were met), 1 when it could not be set up or
failed, 2 for a bad command line or missing binaries.";

/// Every scenario `--scenarios` accepts.
pub const SCENARIOS: [&str; 8] = ["direct", "chat", "stream", "read", "login", "streams", "idle", "soak"];
/// Those run without `--scenarios`: all but `soak`, whose minutes are only spent when asked for.
pub const DEFAULT_SCENARIOS: [&str; 7] = ["direct", "chat", "stream", "read", "login", "streams", "idle"];

const VALUE_FLAGS: [&str; 19] = [
    "--scenarios",
    "--duration",
    "--rate",
    "--stream-rate",
    "--list-rate",
    "--login-chat-rate",
    "--concurrency",
    "--streams",
    "--ramp",
    "--mock-latency-ms",
    "--client-threads",
    "--database",
    "--bcrypt-cost",
    "--server-env",
    "--bin-dir",
    "--out",
    "--warmup",
    "--soak-duration",
    "--soak-rate",
];

/// Every option, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub quick: bool,
    pub scenarios: Vec<String>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    pub rate: f64,
    pub stream_rate: f64,
    pub list_rate: f64,
    pub login_chat_rate: f64,
    #[serde(serialize_with = "secs")]
    pub soak_duration: Duration,
    pub soak_rate: f64,
    pub concurrency: usize,
    pub streams: usize,
    #[serde(serialize_with = "secs")]
    pub ramp: Duration,
    pub mock_latency_ms: u64,
    pub client_threads: usize,
    /// Only whether one was given: a URL may carry a password.
    #[serde(serialize_with = "given")]
    pub database: Option<String>,
    pub bcrypt_cost: u32,
    /// Names only, values may be secrets.
    #[serde(serialize_with = "keys")]
    pub server_env: Vec<(String, String)>,
    pub bin_dir: Option<PathBuf>,
    pub out: Option<PathBuf>,
}

fn secs<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(duration.as_secs_f64())
}

fn given<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match value {
        Some(url) if url.starts_with("postgres") => "postgres",
        Some(_) => "given",
        None => "temporary sqlite",
    })
}

fn keys<S: serde::Serializer>(env: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(env.iter().map(|(key, _)| key))
}

impl Options {
    pub fn runs(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }
}

pub enum Command {
    Run(Box<Options>),
    Help,
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|err| format!("{flag} {value:?}: {err}"))
}

fn positive(flag: &str, value: &str) -> Result<f64, String> {
    let n: f64 = number(flag, value)?;
    if n.is_finite() && n > 0.0 { Ok(n) } else { Err(format!("{flag} {value:?}: must be a positive number")) }
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let n: f64 = number(flag, value)?;
    Duration::try_from_secs_f64(n).map_err(|err| format!("{flag} {value:?}: {err}"))
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut quick = false;
    let mut duration = None;
    let mut streams = None;
    let mut ramp = None;
    let mut soak_duration = None;
    let mut options = Options {
        quick: false,
        scenarios: DEFAULT_SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
        duration: Duration::ZERO,
        warmup: Duration::from_secs(1),
        rate: 1000.0,
        stream_rate: 500.0,
        list_rate: 1000.0,
        login_chat_rate: 500.0,
        soak_duration: Duration::ZERO,
        soak_rate: 200.0,
        concurrency: 32,
        streams: 0,
        ramp: Duration::ZERO,
        mock_latency_ms: 0,
        client_threads: 1,
        database: None,
        bcrypt_cost: 10,
        server_env: Vec::new(),
        bin_dir: None,
        out: None,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" => {
                quick = true;
                continue;
            }
            known if VALUE_FLAGS.contains(&known) => {}
            unknown => return Err(format!("unknown argument {unknown:?}")),
        }
        let value = inline.or_else(|| rest.next().cloned()).ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--scenarios" => {
                let picked: Vec<String> =
                    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if let Some(unknown) = picked.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    return Err(format!("--scenarios: unknown scenario {unknown:?} (known: {})", SCENARIOS.join(", ")));
                }
                if picked.is_empty() {
                    return Err("--scenarios: name at least one scenario".to_owned());
                }
                options.scenarios = picked;
            }
            "--duration" => duration = Some(seconds(flag, &value)?),
            "--warmup" => options.warmup = seconds(flag, &value)?,
            "--rate" => options.rate = positive(flag, &value)?,
            "--stream-rate" => options.stream_rate = positive(flag, &value)?,
            "--list-rate" => options.list_rate = positive(flag, &value)?,
            "--login-chat-rate" => options.login_chat_rate = positive(flag, &value)?,
            "--soak-duration" => soak_duration = Some(seconds(flag, &value)?),
            "--soak-rate" => options.soak_rate = positive(flag, &value)?,
            "--concurrency" => options.concurrency = number::<usize>(flag, &value)?.max(1),
            "--streams" => streams = Some(number::<usize>(flag, &value)?.max(1)),
            "--ramp" => ramp = Some(seconds(flag, &value)?),
            "--mock-latency-ms" => options.mock_latency_ms = number(flag, &value)?,
            "--client-threads" => options.client_threads = number::<usize>(flag, &value)?.max(1),
            "--database" => options.database = Some(value),
            "--bcrypt-cost" => options.bcrypt_cost = number(flag, &value)?,
            "--server-env" => {
                let (key, val) =
                    value.split_once('=').ok_or_else(|| format!("--server-env {value:?}: expected KEY=VALUE"))?;
                options.server_env.push((key.to_owned(), val.to_owned()));
            }
            "--bin-dir" => options.bin_dir = Some(PathBuf::from(value)),
            "--out" => options.out = Some(PathBuf::from(value)),
            unknown => return Err(format!("unknown argument {unknown:?}")),
        }
    }
    options.quick = quick;
    let default_secs = if quick { 3 } else { 10 };
    options.duration = duration.unwrap_or(Duration::from_secs(default_secs));
    options.streams = streams.unwrap_or(if quick { 1_000 } else { 10_000 });
    options.ramp = ramp.unwrap_or(Duration::from_secs(if quick { 2 } else { 5 }));
    options.soak_duration = soak_duration.unwrap_or(Duration::from_secs(if quick { 60 } else { 600 }));
    if options.duration.is_zero() {
        return Err("--duration must be more than 0".to_owned());
    }
    if options.soak_duration.is_zero() {
        return Err("--soak-duration must be more than 0".to_owned());
    }
    Ok(Command::Run(Box::new(options)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()) {
            Ok(Command::Run(options)) => *options,
            Ok(Command::Help) => panic!("help"),
            Err(problem) => panic!("{problem}"),
        }
    }

    #[test]
    fn quick_shortens_what_was_not_given() {
        let options = run(&["--quick", "--streams=20"]);
        assert_eq!(
            (options.duration, options.streams, options.ramp),
            (Duration::from_secs(3), 20, Duration::from_secs(2))
        );
        let options = run(&["--duration", "1.5", "--quick"]);
        assert_eq!(options.duration, Duration::from_millis(1500));
        let options = run(&[]);
        assert_eq!((options.duration.as_secs(), options.streams), (10, 10_000));
    }

    #[test]
    fn scenarios_and_env_are_checked() {
        assert_eq!(run(&["--scenarios", "chat,read"]).scenarios, ["chat", "read"]);
        assert!(parse(&["--scenarios".to_owned(), "nope".to_owned()]).is_err());
        assert_eq!(run(&["--scenarios", "soak,chat"]).scenarios, ["soak", "chat"]);
        assert!(parse(&["--server-env".to_owned(), "NOEQUALS".to_owned()]).is_err());
        assert!(parse(&["--rate".to_owned(), "0".to_owned()]).is_err());
        assert!(parse(&["--rate".to_owned()]).is_err());
        let options = run(&["--server-env", "SQLITE_SYNCHRONOUS=NORMAL", "--server-env=A=b=c"]);
        assert_eq!(options.server_env[1], ("A".to_owned(), "b=c".to_owned()));
    }

    #[test]
    fn soak_runs_only_when_named_and_quick_shortens_it() {
        for args in [&[][..], &["--quick"][..]] {
            let options = run(args);
            assert!(!options.runs("soak"), "{args:?}");
            assert_eq!(options.scenarios, DEFAULT_SCENARIOS);
        }
        let options = run(&[]);
        assert_eq!((options.soak_duration, options.soak_rate), (Duration::from_secs(600), 200.0));
        let options = run(&["--quick", "--scenarios", "soak"]);
        assert!(options.runs("soak"));
        assert_eq!(options.soak_duration, Duration::from_secs(60));
        let options = run(&["--scenarios=soak", "--soak-duration", "90", "--soak-rate=50", "--quick"]);
        assert_eq!((options.soak_duration, options.soak_rate), (Duration::from_secs(90), 50.0));
        assert!(parse(&["--soak-duration".to_owned(), "0".to_owned()]).is_err());
        assert!(parse(&["--soak-rate".to_owned(), "-1".to_owned()]).is_err());
    }
}
