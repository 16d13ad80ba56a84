//! The processes under test: `mock-llm` and `chat-server` started, watched for their address, measured, killed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// How long a child may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a child's output kept to explain a failed start.
const KEPT_LINES: usize = 40;
/// The RSS sampler's period.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// A running child, killed (and reaped) when dropped, so that no error path leaves one behind.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    /// `http://HOST:PORT`, from the child's "listening on" line.
    pub base: String,
    child: Child,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the child printed, to explain a failure.
    pub fn recent_output(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Fails when the child has exited (it should run until the bench kills it).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("{} exited ({status}); its last output:\n{}", self.name, self.recent_output()),
            Err(err) => bail!("cannot check on {}: {err}", self.name),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` with piped output, drains both streams in threads (a full pipe would block the child) and waits
/// for the "listening on http://..." line, on either stream.
fn spawn_and_wait_for_address(name: &str, mut command: Command) -> anyhow::Result<Running> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let output = Arc::new(Mutex::new(VecDeque::new()));
    let (address_tx, address_rx) = mpsc::channel();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let output = Arc::clone(&output);
        let address_tx = address_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let rest = line.get(at + "listening on ".len()..).unwrap_or_default();
                    let address = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = address_tx.send(address);
                }
                let mut kept = output.lock().unwrap_or_else(PoisonError::into_inner);
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
    }
    drop(address_tx);
    let mut running = Running { name: name.to_owned(), base: String::new(), child, output };
    match address_rx.recv_timeout(START_TIMEOUT) {
        Ok(address) => {
            running.base = address;
            Ok(running)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = running.child.wait().map(|status| status.to_string()).unwrap_or_default();
            Err(anyhow!(
                "{name} exited ({status}) before announcing its address; its last output:\n{}",
                running.recent_output()
            ))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(anyhow!(
            "{name} did not announce its address within {} s; its last output:\n{}",
            START_TIMEOUT.as_secs(),
            running.recent_output()
        )),
    }
}

/// How to start a `mock-llm`.
#[derive(Debug, Clone, Default)]
pub struct MockSettings {
    pub latency_ms: u64,
    pub tokens_per_second: Option<f64>,
    pub reply: Option<String>,
}

pub fn start_mock(bin_dir: &Path, settings: &MockSettings) -> anyhow::Result<Running> {
    let mut command = Command::new(bin_dir.join("mock-llm"));
    // `--max-recorded 0`: the bench never reads the record, and a record of every request would grow the mock.
    command.args(["--port", "0", "--max-recorded", "0", "--latency-ms", &settings.latency_ms.to_string()]);
    if let Some(rate) = settings.tokens_per_second {
        command.args(["--tokens-per-second", &rate.to_string()]);
    }
    if let Some(reply) = &settings.reply {
        command.args(["--reply", reply]);
    }
    spawn_and_wait_for_address("mock-llm", command)
}

/// How to start a `chat-server`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub database_url: String,
    /// The working directory (no stray `.env` is read from the caller's).
    pub dir: PathBuf,
    pub mock_base: String,
    pub bcrypt_cost: u32,
    /// Applied last, so they override the bench's own.
    pub extra_env: Vec<(String, String)>,
}

pub fn start_server(bin_dir: &Path, settings: &ServerSettings) -> anyhow::Result<Running> {
    let mut command = Command::new(bin_dir.join("chat-server"));
    command.env_clear().current_dir(&settings.dir);
    let secret: [u8; 32] = rand::random();
    let env = [
        ("DATABASE_URL", settings.database_url.clone()),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("JWT_SECRET_KEY", hex::encode(secret)),
        ("BCRYPT_COST", settings.bcrypt_cost.to_string()),
        // The address is only announced at `info`, by the binary itself; every other target stays at `warn` so that
        // per-request log lines do not weigh on the figures.
        ("RUST_LOG", "warn,chat_server=info,chat_server::middleware=warn".to_owned()),
        // The load comes from one address and a few users: the server's rate limits would refuse most of it.
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
        ("REPLY_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
        ("MAX_REPLIES_PER_USER", "0".to_owned()),
        ("GROQ_API_KEY", "bench".to_owned()),
        ("GROQ_BASE_URL", format!("{}/v1", settings.mock_base)),
    ];
    for (key, value) in env {
        command.env(key, value);
    }
    for (key, value) in &settings.extra_env {
        command.env(key, value);
    }
    spawn_and_wait_for_address("chat-server", command)
}

/// Polls `GET /health` until it answers 200.
pub async fn wait_healthy(client: &reqwest::Client, server: &mut Running) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("{}/health", server.base);
    loop {
        server.check_alive()?;
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "chat-server at {} never answered /health with 200; its last output:\n{}",
                server.base,
                server.recent_output()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process's resident set size in KiB (`VmRSS` of `/proc/<pid>/status`); `None` when it cannot be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time a process has used so far (user + system), in seconds; `None` when it cannot be read.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the fields that follow start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12th and 13th after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // In USER_HZ, which Linux fixes at 100 for user space whatever the kernel's own tick rate.
    Some(ticks as f64 / 100.0)
}

/// The CPU time all processes of the machine have used so far (every state but idle and iowait), in seconds.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map_while(|f| f.parse().ok()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some(total.saturating_sub(idle) as f64 / 100.0)
}

/// The first three fields of `/proc/loadavg`: the run queue averaged over 1, 5 and 15 minutes.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// What the processes used during a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// The server's highest RSS.
    pub peak_rss_kib: Option<u64>,
    /// CPU time over wall time, in percent of one core.
    pub server_cpu_percent: Option<f64>,
    pub mock_cpu_percent: Option<f64>,
    pub bench_cpu_percent: Option<f64>,
    /// Every other process of the machine: what the figures had to compete with.
    pub others_cpu_percent: Option<f64>,
}

/// The CPU time of the server, the mock, the bench itself and the whole machine from the start of a run.
#[derive(Debug)]
pub struct Watch {
    started: Instant,
    pids: [u32; 3],
    cpu: [Option<f64>; 3],
    machine: Option<f64>,
}

impl Watch {
    pub fn start(server: u32, mock: u32) -> Self {
        let pids = [server, mock, std::process::id()];
        Self { started: Instant::now(), pids, cpu: pids.map(cpu_seconds), machine: machine_busy_seconds() }
    }

    pub fn finish(&self, peak_rss_kib: Option<u64>) -> Usage {
        let wall = self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        let percent = |i: usize| {
            let before = self.cpu.get(i).copied().flatten()?;
            let after = cpu_seconds(*self.pids.get(i)?)?;
            Some((after - before) / wall * 100.0)
        };
        let ours = [percent(0), percent(1), percent(2)];
        let machine = self.machine.zip(machine_busy_seconds()).map(|(before, after)| (after - before) / wall * 100.0);
        let others = machine.map(|busy| (busy - ours.iter().flatten().sum::<f64>()).max(0.0));
        Usage {
            peak_rss_kib,
            server_cpu_percent: ours[0],
            mock_cpu_percent: ours[1],
            bench_cpu_percent: ours[2],
            others_cpu_percent: others,
        }
    }
}

/// Samples a process's RSS every 20 ms in its own thread (so that a busy load generator cannot skip samples) and
/// keeps the maximum since the last [`RssSampler::reset`].
#[derive(Debug)]
pub struct RssSampler {
    pid: u32,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_peak, thread_stop) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    thread_peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self { pid, peak, stop }
    }

    /// Starts a new peak from the current RSS.
    pub fn reset(&self) {
        self.peak.store(rss_kib(self.pid).unwrap_or(0), Ordering::Relaxed);
    }

    /// The highest RSS seen since the last reset, in KiB, including one last sample now.
    pub fn peak_kib(&self) -> Option<u64> {
        if let Some(rss) = rss_kib(self.pid) {
            self.peak.fetch_max(rss, Ordering::Relaxed);
        }
        Some(self.peak.load(Ordering::Relaxed)).filter(|&peak| peak > 0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Raises this process's soft limit on open files to the hard limit (children inherit it); returns the limit now in
/// force, `None` for unlimited or unknown.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            // Best effort: a failure leaves the old limit, which the returned value then reports.
            let _ = setrlimit(Resource::Nofile, limit);
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_measured() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(cpu_seconds(me).is_some());
        assert!(machine_busy_seconds().is_some());
        assert!(load_average().is_some());
        let usage = Watch::start(me, me).finish(Some(1));
        assert_eq!(usage.peak_rss_kib, Some(1));
        assert!(usage.bench_cpu_percent.is_some());
    }

    #[test]
    fn a_missing_process_has_no_figures() {
        // Process ids are below 2^22 on Linux.
        assert_eq!(rss_kib(u32::MAX), None);
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}
