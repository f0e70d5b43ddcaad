//! Services as child processes of this binary (`shop serve <name>`), so each one's CPU time
//! and memory can be read from `/proc`, and a sampler that reads them periodically.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::settings::{QueueKind, Settings, Which};

/// How long a service may take to print its address and then to answer /readyz with 200.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// After SIGTERM (a graceful stop takes at most ~10 s per step), SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// Lines of a child's stderr kept to explain a failure.
const STDERR_LINES: usize = 40;

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub at: Instant,
    /// utime + stime, in seconds.
    pub cpu_secs: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS since start), KiB.
    pub hwm_kib: u64,
}

fn clock_ticks() -> f64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` once the process is gone.
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (2nd field) may hold spaces: count fields after its closing paren.
    // Then field 3 (state) is index 0, utime (14) index 11, stime (15) index 12.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(ProcStat {
        at,
        cpu_secs: (utime + stime) as f64 / clock_ticks(),
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
    })
}

/// One service running as `shop serve <name>` in the namespace of `settings`.
pub struct ServiceProc {
    pub which: Which,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// The last statistics read while it ran (the peak RSS survives the process this way).
    pub last: Option<ProcStat>,
}

impl ServiceProc {
    /// Starts the service and waits until it listens (not until it is ready: see
    /// [`ServiceProc::wait_ready`]).
    pub async fn spawn(which: Which, settings: &Settings) -> anyhow::Result<ServiceProc> {
        let exe = std::env::current_exe().context("cannot find this program to run a service")?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg(which.name())
            .env("AMQP_URL", &settings.amqp_url)
            .env("SHOP_EXCHANGE", &settings.exchange)
            .env("SHOP_QUEUE_PREFIX", &settings.queue_prefix)
            .env(
                "SHOP_QUEUE_TYPE",
                match settings.queue_type {
                    QueueKind::Quorum => "quorum",
                    QueueKind::Classic => "classic",
                },
            )
            .env("DATABASE_URL", &settings.database_url)
            .env("SHOP_DATABASE_PREFIX", &settings.database_prefix)
            .env_remove("CHECKOUT_DATABASE_URL")
            .env_remove("CART_DATABASE_URL")
            .env_remove("INVENTORY_DATABASE_URL")
            .env("CHECKOUT_ADDR", settings.checkout_addr.to_string())
            .env("CART_ADDR", settings.cart_addr.to_string())
            .env("INVENTORY_ADDR", settings.inventory_addr.to_string())
            .env("SHOP_DB_POOL", settings.db_pool.to_string())
            .env("SHOP_PREFETCH", settings.prefetch.to_string())
            .env("SHOP_CONCURRENCY", settings.concurrency.to_string())
            .env("SHOP_BATCH", settings.batch.to_string())
            .env("SHOP_MAX_ATTEMPTS", settings.max_attempts.to_string())
            .env("LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn,sqlx=warn,lapin=warn");
        }
        // SAFETY: between fork and exec only prctl(2) runs (async-signal-safe, no allocation).
        // If this process dies without stopping the service, the kernel sends it SIGTERM.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start `shop serve {}`", which.name()))?;
        let pid = child.id().context("the service exited at once")?;

        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_LINES)));
        if let Some(err) = child.stderr.take() {
            let kept = stderr.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                    if kept.len() == STDERR_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        }
        let out = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(out).lines();
        let marker = format!("{} listening on http://", which.name());
        let found = tokio::time::timeout(START_DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix(&marker) {
                    return anyhow::Ok(Some(addr.trim().parse::<SocketAddr>()?));
                }
            }
            Ok(None)
        })
        .await;
        let mut proc = ServiceProc {
            which,
            addr: "127.0.0.1:0".parse().expect("an address"),
            pid,
            child,
            stderr,
            last: None,
        };
        match found {
            Ok(Ok(Some(addr))) => proc.addr = addr,
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = proc.child.wait().await.ok();
                anyhow::bail!(
                    "`shop serve {}` exited ({}) before listening: {}",
                    which.name(),
                    status.map_or("?".into(), |s| s.to_string()),
                    proc.stderr_tail()
                );
            }
            Err(_) => anyhow::bail!(
                "`shop serve {}` did not listen within {START_DEADLINE:?}: {}",
                which.name(),
                proc.stderr_tail()
            ),
        }
        // Keep reading stdout, so the child never writes into a full or closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(proc)
    }

    /// The last lines the service wrote on stderr, for an error message.
    pub fn stderr_tail(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        if kept.is_empty() {
            "(nothing on stderr)".into()
        } else {
            kept.iter().cloned().collect::<Vec<_>>().join("\n")
        }
    }

    /// Waits until `GET /readyz` answers 200 (database migrated, broker connected, consumers
    /// running), failing early if the process exits.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.addr);
        let end = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "`shop serve {}` exited ({status}): {}",
                    self.which.name(),
                    self.stderr_tail()
                );
            }
            if Instant::now() >= end {
                anyhow::bail!(
                    "`shop serve {}` not ready after {START_DEADLINE:?}: {}",
                    self.which.name(),
                    self.stderr_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads its statistics now (and remembers them).
    pub fn stat(&mut self) -> Option<ProcStat> {
        let s = read_stat(self.pid)?;
        self.last = Some(s);
        Some(s)
    }

    /// SIGTERM (graceful: in-flight work finishes), then SIGKILL after a deadline. Returns the
    /// statistics read just before the signal. An exit other than 0 on SIGTERM is an error.
    pub async fn stop(mut self) -> anyhow::Result<Option<ProcStat>> {
        let last = self.stat().or(self.last);
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "`shop serve {}` had already exited ({status}): {}",
                self.which.name(),
                self.stderr_tail()
            );
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).context("pid out of range")?);
        let _ = kill(pid, Signal::SIGTERM);
        match tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(last),
            Ok(Ok(status)) => anyhow::bail!(
                "`shop serve {}` exited with {status} on SIGTERM: {}",
                self.which.name(),
                self.stderr_tail()
            ),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let _ = self.child.kill().await;
                anyhow::bail!(
                    "`shop serve {}` did not stop within {STOP_DEADLINE:?} of SIGTERM; killed",
                    self.which.name()
                )
            }
        }
    }
}

/// Reads the statistics of some processes every `every`, in the background.
pub struct Sampler {
    samples: Arc<Mutex<Vec<(usize, ProcStat)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(pids: Vec<u32>, every: Duration) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let read: Vec<(usize, ProcStat)> = pids
                        .iter()
                        .enumerate()
                        .filter_map(|(i, pid)| read_stat(*pid).map(|s| (i, s)))
                        .collect();
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(read);
                }
            }
        });
        Sampler { samples, task }
    }

    /// The samples of process `index` (in the order given to `start`) taken in `[from, to]`.
    pub fn window(&self, index: usize, from: Instant, to: Instant) -> Vec<ProcStat> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(i, s)| *i == index && s.at >= from && s.at <= to)
            .map(|(_, s)| *s)
            .collect()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
