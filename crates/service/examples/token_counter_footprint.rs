//! Measures the token counter against tiktoken's `CoreBPE`: resident memory (`rss old|new`, one per process)
//! and the speed of counting a 1 KB paragraph (`speed`). Run it with `--release`.

use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chat_service::TokenCounter;

const PARAGRAPH: &str = "The history of the written word is, in many ways, the history of compression. Early scribes \
abbreviated common words to save parchment, and typesetters later kept the most frequent letters closest to hand. \
Modern language models inherit this habit: before a sentence reaches the network, a tokenizer cuts it into pieces \
drawn from a fixed vocabulary, so that frequent words become a single token while rare ones are spelled out in \
fragments. The choice of vocabulary matters more than it first appears. A vocabulary that is too small wastes the \
model's context on long runs of fragments; one that is too large spends memory on entries that almost never occur. \
Engineers who run these systems in production count tokens constantly, because every request has a budget, and a \
conversation that grows too long must be trimmed before it is sent. Counting therefore has to be both exact and \
cheap, which is why it pays to keep the tokenizer's tables small.";

/// The resident set size of this process, in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss(which: &str, out: &mut impl Write) -> std::io::Result<()> {
    let before = rss_kib();
    let start = Instant::now();
    let count = match which {
        "old" => tiktoken_rs::cl100k_base_singleton().encode_ordinary(PARAGRAPH).len(),
        _ => TokenCounter::new().count(PARAGRAPH) as usize,
    };
    let took = start.elapsed();
    let built = rss_kib();
    std::thread::sleep(Duration::from_millis(1_500));
    let later = rss_kib();
    writeln!(
        out,
        "{which}: built in {took:.0?} ({count} tokens); VmRSS {before} KiB before, {built} KiB after (+{} KiB), \
         {later} KiB 1.5 s later (+{} KiB)",
        built.saturating_sub(before),
        later.saturating_sub(before),
    )
}

fn speed(out: &mut impl Write) -> std::io::Result<()> {
    let old = tiktoken_rs::cl100k_base_singleton();
    let new = TokenCounter::new();
    time("old", |text| old.encode_ordinary(text).len(), out)?;
    time("new", |text| new.count(text) as usize, out)
}

/// Times `count` on [`PARAGRAPH`], after a warm-up.
fn time(name: &str, count: impl Fn(&str) -> usize, out: &mut impl Write) -> std::io::Result<()> {
    const ROUNDS: u32 = 20_000;
    for _ in 0..1_000 {
        black_box(count(black_box(PARAGRAPH)));
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        black_box(count(black_box(PARAGRAPH)));
    }
    let each = start.elapsed() / ROUNDS;
    writeln!(out, "{name}: {each:.1?} per count of {} bytes ({} tokens)", PARAGRAPH.len(), count(PARAGRAPH))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    let done = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["rss", which @ ("old" | "new")] => rss(which, &mut out),
        ["speed"] => speed(&mut out),
        _ => {
            eprintln!("usage: token_counter_footprint rss old|new | speed");
            return ExitCode::FAILURE;
        }
    };
    if done.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
