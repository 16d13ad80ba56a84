//! The `mock-llm` binary: parse the command line, bind, announce the address, serve until killed.

use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::process::ExitCode;

use mock_llm::{Defaults, MockLlm};

const USAGE: &str = "\
mock-llm: an OpenAI- and Anthropic-compatible LLM server with scripted latency, speed and faults.

usage: mock-llm [--host HOST] [--port PORT] [--latency-ms N] [--tokens-per-second N] [--reply TEXT]
                [--workers N] [--max-recorded N]

  --host HOST              address to bind (default 127.0.0.1)
  --port PORT              port to bind, 0 for any free one (default 8089)
  --latency-ms N           delay before every response's headers (default 0)
  --tokens-per-second N    pace of generated tokens (default: as fast as possible)
  --reply TEXT             reply text (default: \"Mock reply to: <last user message>\")
  --workers N              server worker threads (default: one per CPU)
  --max-recorded N         recorded requests kept for /_mock/requests, oldest dropped first (default 10000)

Prints \"listening on http://HOST:PORT\" on stdout once bound.

Provider API:
  POST /v1/chat/completions, /chat/completions   OpenAI chat completions, streamed when \"stream\": true
  POST /v1/messages, /messages                   Anthropic Messages, streamed when \"stream\": true
  GET  /v1/models, /models                       OpenAI model list

Control API:
  POST /_mock/script     append a JSON array of behaviours to the queue; each chat request takes the next one,
                         or the default reply when the queue is empty. Answers {\"queued\": N}.
  GET  /_mock/script     the behaviours still queued
  POST /_mock/reset      clear the queue and the recorded requests
  GET  /_mock/requests   every provider request so far:
                         [{\"seq\", \"path\", \"headers\", \"body\", \"disconnected\"}]

Behaviours ({\"kind\": ...}; every kind also takes \"latency_ms\"):
  reply         text, tokens_per_second (null: unpaced), usage {prompt_tokens, completion_tokens},
                usage_style \"openai\"|\"groq\"|\"none\", keep_alive_comments, finish_reason
  status        status, retry_after, body (JSON, or a string sent as text), message
  hang          never answer
  hang_after    tokens, text, tokens_per_second: stream that many tokens, then stall
  cut_after     tokens, text, tokens_per_second: stream that many tokens, then close the connection
  malformed     200 with a body (or one SSE event) that is not JSON
  null_content  OpenAI content null / Anthropic empty content
  reset         abort the connection with a TCP RST, no response

Example:
  curl -s localhost:8089/_mock/script -d '[{\"kind\":\"status\",\"status\":429,\"retry_after\":\"1\"}]'";

/// The flags that take a value: anything else is refused before the next argument is taken as its value.
const VALUE_FLAGS: [&str; 7] =
    ["--host", "--port", "--latency-ms", "--tokens-per-second", "--reply", "--workers", "--max-recorded"];

/// The binary keeps a bounded record by default: it is the one left running through long load tests.
const DEFAULT_MAX_RECORDED: usize = 10_000;

#[derive(Debug)]
struct Options {
    host: String,
    port: u16,
    defaults: Defaults,
    workers: NonZeroUsize,
}

enum Command {
    Serve(Options),
    Help,
    Version,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut options = Options {
        host: "127.0.0.1".to_owned(),
        port: 8089,
        defaults: Defaults { max_recorded: Some(DEFAULT_MAX_RECORDED), ..Defaults::default() },
        workers: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            known if VALUE_FLAGS.contains(&known) => {}
            unknown => return Err(format!("unknown argument {unknown:?}")),
        }
        let value = inline.or_else(|| rest.next().cloned()).ok_or_else(|| format!("{flag} needs a value"))?;
        let invalid = |err: &dyn std::fmt::Display| format!("{flag} {value:?}: {err}");
        match flag {
            "--host" => options.host = value,
            "--port" => options.port = value.parse().map_err(|err| invalid(&err))?,
            "--latency-ms" => options.defaults.latency_ms = value.parse().map_err(|err| invalid(&err))?,
            "--tokens-per-second" => {
                options.defaults.tokens_per_second = Some(value.parse().map_err(|err| invalid(&err))?);
            }
            "--reply" => options.defaults.reply = Some(value),
            "--workers" => options.workers = value.parse().map_err(|err| invalid(&err))?,
            "--max-recorded" => options.defaults.max_recorded = Some(value.parse().map_err(|err| invalid(&err))?),
            unknown => return Err(format!("unknown argument {unknown:?}")),
        }
    }
    options.defaults.validate()?;
    Ok(Command::Serve(options))
}

/// Raises the soft limit on open files to the hard one: every connection costs two descriptors (the second is what
/// the `reset` behaviour aborts), and a load test should run out of client capacity before the mock runs out of these.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        // `None` means unlimited, and the soft limit can never exceed the hard one: differing means lower.
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            // Best effort: the mock still works within the old limit.
            let _ = setrlimit(Resource::Nofile, limit);
        }
    }
}

fn serve(options: Options) -> Result<(), String> {
    raise_open_files_limit();
    let listener = TcpListener::bind((options.host.as_str(), options.port))
        .map_err(|err| format!("cannot listen on {}:{}: {err}", options.host, options.port))?;
    let mock = MockLlm::serve_blocking(listener, options.defaults, options.workers).map_err(|err| err.to_string())?;
    say(&format!("listening on {}", mock.base_url()));
    mock.wait().map_err(|err| err.to_string())
}

#[expect(clippy::print_stdout, reason = "the address and the help are this binary's stdout interface")]
fn say(text: &str) {
    println!("{text}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match parse(&args) {
        Ok(Command::Serve(options)) => serve(options),
        Ok(Command::Help) => {
            say(USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            say(&format!("mock-llm {}", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("mock-llm: {problem} (see mock-llm --help)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("mock-llm: {problem}");
            ExitCode::FAILURE
        }
    }
}
