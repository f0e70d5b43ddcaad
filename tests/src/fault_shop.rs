//! A shop for the fault tests: like [`crate::TestShop`] (own databases, exchange and queues
//! under a unique id, removed at the end even when the test panics), but each service is
//! started, stopped, killed and restarted on its own, in this process or in a child process
//! (`shop-proc serve <service>`), and a restarted service comes back on the same port.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use events::{BusConfig, BusHealth, CountersSnapshot};
use kit::Running;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::{Settings, ShopClient, Which, remove_everything, test_settings, unique_id};

/// How long a service may take to become ready (a bus that reconnects waits up to 10 s
/// between attempts).
pub const READY: Duration = Duration::from_secs(60);
/// How often readiness and other conditions are polled.
pub const POLL: Duration = Duration::from_millis(100);

/// Adds `more` to `total`.
pub fn add(total: &mut CountersSnapshot, more: &CountersSnapshot) {
    total.applied += more.applied;
    total.duplicates += more.duplicates;
    total.retried += more.retried;
    total.dead_lettered += more.dead_lettered;
}

/// `settings` as the `shop` command's flags.
fn args_for(s: &Settings) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--amqp-url".into(),
        s.amqp_url.clone(),
        "--exchange".into(),
        s.exchange.clone(),
        format!("--queue-prefix={}", s.queue_prefix),
        "--queue-type".into(),
        match s.queue_type {
            shop::settings::QueueKind::Quorum => "quorum".into(),
            shop::settings::QueueKind::Classic => "classic".into(),
        },
        "--database-url".into(),
        s.database_url.clone(),
        format!("--database-prefix={}", s.database_prefix),
        "--checkout-addr".into(),
        s.checkout_addr.to_string(),
        "--cart-addr".into(),
        s.cart_addr.to_string(),
        "--inventory-addr".into(),
        s.inventory_addr.to_string(),
        "--db-pool".into(),
        s.db_pool.to_string(),
        "--prefetch".into(),
        s.prefetch.to_string(),
        "--concurrency".into(),
        s.concurrency.to_string(),
        "--max-attempts".into(),
        s.max_attempts.to_string(),
    ];
    for (flag, url) in [
        ("--checkout-database-url", &s.checkout_database_url),
        ("--cart-database-url", &s.cart_database_url),
        ("--inventory-database-url", &s.inventory_database_url),
    ] {
        if let Some(url) = url {
            args.push(flag.into());
            args.push(url.clone());
        }
    }
    args
}

fn slot(which: Which) -> usize {
    match which {
        Which::Checkout => 0,
        Which::Cart => 1,
        Which::Inventory => 2,
    }
}

/// A service running in a child process.
struct ServiceProcess {
    child: Child,
    /// Kept open: the child may still write to it.
    _stdout: Lines<BufReader<ChildStdout>>,
}

/// Starts `program serve <which>` with `settings` and waits until it says where it listens.
async fn spawn_process(
    which: Which,
    settings: &Settings,
    program: &str,
) -> (ServiceProcess, SocketAddr) {
    let mut command = Command::new(program);
    command
        .arg("serve")
        .arg(which.name())
        .args(args_for(settings))
        // Only what we pass: nothing from this process's environment (DATABASE_URL…).
        .env_clear()
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let prefix = format!("{} listening on http://", which.name());
    let addr = tokio::time::timeout(READY, async {
        while let Some(line) = stdout
            .next_line()
            .await
            .expect("reading the child's stdout")
        {
            if let Some(addr) = line.strip_prefix(&prefix) {
                return addr.trim().parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        panic!(
            "{} (a child process) never said where it listens",
            which.name()
        )
    });
    (
        ServiceProcess {
            child,
            _stdout: stdout,
        },
        addr,
    )
}

/// An extra instance of a service in a child process ([`FaultShop::spawn_replica`]); killed
/// when dropped.
pub struct Replica {
    pub which: Which,
    pub addr: SocketAddr,
    process: ServiceProcess,
}

impl Replica {
    /// SIGKILLs it and reaps it.
    pub async fn kill(mut self) {
        self.process.child.start_kill().expect("sending SIGKILL");
        let status = self.process.child.wait().await.expect("reaping the child");
        assert_eq!(
            status.signal(),
            Some(9),
            "a {} replica exited with {status}",
            self.which.name()
        );
    }
}

enum Instance {
    InProcess(Running),
    Process(Box<ServiceProcess>),
}

pub struct FaultShop {
    pub id: String,
    /// What the services are started with (a test may point one at a proxy).
    pub settings: Settings,
    instances: [Option<Instance>; 3],
    addrs: [Option<SocketAddr>; 3],
    /// Counters of the incarnations that ended, per service.
    past: [CountersSnapshot; 3],
    /// Services one of whose incarnations died with its counters (a killed process).
    uncounted: [bool; 3],
    /// Pools straight to the services' databases, for the checks.
    pools: OnceLock<Vec<PgPool>>,
    removed: bool,
}

impl Default for FaultShop {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultShop {
    /// A shop with nothing started yet.
    pub fn new() -> FaultShop {
        Self::with(|_| {})
    }

    /// Like [`FaultShop::new`], with the settings adjusted by `configure`.
    pub fn with(configure: impl FnOnce(&mut Settings)) -> FaultShop {
        let id = unique_id();
        let mut settings = test_settings(&id);
        configure(&mut settings);
        FaultShop {
            id,
            settings,
            instances: [None, None, None],
            addrs: [None; 3],
            past: [CountersSnapshot::default(); 3],
            uncounted: [false; 3],
            pools: OnceLock::new(),
            removed: false,
        }
    }

    /// The settings `which` starts with: on the port it had before, if it ran already.
    fn settings_for(&self, which: Which) -> Settings {
        let mut s = self.settings.clone();
        if let Some(addr) = self.addrs[slot(which)] {
            match which {
                Which::Checkout => s.checkout_addr = addr,
                Which::Cart => s.cart_addr = addr,
                Which::Inventory => s.inventory_addr = addr,
            }
        }
        s
    }

    /// The settings with every service on its own database directly (no proxy): what the
    /// checks and the cleanup use.
    pub fn direct_settings(&self) -> Settings {
        let mut s = self.settings.clone();
        s.checkout_database_url = None;
        s.cart_database_url = None;
        s.inventory_database_url = None;
        s
    }

    pub fn bus(&self) -> BusConfig {
        self.settings.bus()
    }

    /// Creates and migrates the three databases and declares their queues, starting nothing
    /// (`shop migrate`).
    pub async fn migrate_all(&self) {
        for which in Which::ALL {
            shop::system::migrate(which, &self.settings)
                .await
                .unwrap_or_else(|e| panic!("migrating {}: {e:#}", which.name()));
        }
    }

    /// Starts `which` in this process; returns at once (not waiting for readiness).
    pub async fn start(&mut self, which: Which) {
        assert!(
            self.instances[slot(which)].is_none(),
            "{} runs already",
            which.name()
        );
        let running = shop::system::start(which, &self.settings_for(which))
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e:#}", which.name()));
        self.addrs[slot(which)] = Some(running.addr);
        self.instances[slot(which)] = Some(Instance::InProcess(running));
    }

    /// Starts the three services in this process and waits until each is ready.
    pub async fn start_all(&mut self) {
        // Inventory first: checkout's catalogue replica is fed by it.
        for which in [Which::Inventory, Which::Cart, Which::Checkout] {
            self.start(which).await;
        }
        for which in Which::ALL {
            self.wait_ready(which).await;
        }
    }

    /// Starts `which` as a child process running `program serve <which>` (the `shop`
    /// command) with this shop's settings, and returns once it listens.
    pub async fn spawn(&mut self, which: Which, program: &str) {
        assert!(
            self.instances[slot(which)].is_none(),
            "{} runs already",
            which.name()
        );
        let (process, addr) = spawn_process(which, &self.settings_for(which), program).await;
        self.addrs[slot(which)] = Some(addr);
        self.instances[slot(which)] = Some(Instance::Process(Box::new(process)));
    }

    /// Starts one more instance of `which` in a child process, on a port of its own: a replica
    /// that competes for the same queues and shares the same outbox and database.
    pub async fn spawn_replica(&self, which: Which, program: &str) -> Replica {
        let (process, addr) = spawn_process(which, &self.settings, program).await;
        Replica {
            which,
            addr,
            process,
        }
    }

    /// SIGKILLs `which` (a child process) and reaps it.
    pub async fn kill(&mut self, which: Which) {
        let Some(Instance::Process(mut process)) = self.instances[slot(which)].take() else {
            panic!("{} is not running as a child process", which.name());
        };
        process.child.start_kill().expect("sending SIGKILL");
        let status = process.child.wait().await.expect("reaping the child");
        assert_eq!(
            status.signal(),
            Some(9),
            "{} exited with {status}",
            which.name()
        );
        self.uncounted[slot(which)] = true;
    }

    /// Stops `which` (running in this process) gracefully: in-flight requests and deliveries
    /// finish, the outbox is flushed.
    pub async fn stop(&mut self, which: Which) {
        match self.instances[slot(which)].take() {
            Some(Instance::InProcess(running)) => {
                let s = running.bus_health().snapshot();
                add(&mut self.past[slot(which)], &s);
                running.shutdown().await;
            }
            Some(Instance::Process(_)) => panic!("{} runs as a child process", which.name()),
            None => panic!("{} is not running", which.name()),
        }
    }

    /// The bus health of `which` if it runs in this process.
    pub fn health(&self, which: Which) -> Option<Arc<BusHealth>> {
        match &self.instances[slot(which)] {
            Some(Instance::InProcess(r)) => Some(r.bus_health()),
            _ => None,
        }
    }

    /// What `which`'s consumer did, summed over its incarnations in this process.
    pub fn counters(&self, which: Which) -> CountersSnapshot {
        let mut total = self.past[slot(which)];
        if let Some(h) = self.health(which) {
            add(&mut total, &h.snapshot());
        }
        total
    }

    /// Whether [`FaultShop::counters`] covers every incarnation of `which` (false once a
    /// child process ran it: its counters die with it).
    pub fn counted(&self, which: Which) -> bool {
        !self.uncounted[slot(which)]
            && !matches!(self.instances[slot(which)], Some(Instance::Process(_)))
    }

    pub fn addr(&self, which: Which) -> SocketAddr {
        self.addrs[slot(which)].unwrap_or_else(|| panic!("{} has never been started", which.name()))
    }

    /// A client for the three APIs (each service must have been started once).
    pub fn client(&self) -> ShopClient {
        ShopClient::new(
            self.addr(Which::Checkout),
            self.addr(Which::Cart),
            self.addr(Which::Inventory),
        )
    }

    /// `GET /readyz` of `which`: its status and body.
    pub async fn readyz(&self, which: Which) -> (StatusCode, Value) {
        let client = self.client();
        let response = client
            .http()
            .get(client.url(which, "/readyz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /readyz of {}: {e}", which.name()));
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Waits until `which`'s `/readyz` answers 200.
    pub async fn wait_ready(&self, which: Which) {
        let client = self.client();
        let client = &client;
        shop::wait::until(
            &format!("{} to be ready", which.name()),
            READY,
            POLL,
            || async move { client.ready(which).await.then_some(()) },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until `which`'s `/readyz` answers 503, and returns its body.
    pub async fn wait_not_ready(&self, which: Which) -> Value {
        shop::wait::until(
            &format!("{} to report not ready", which.name()),
            READY,
            POLL,
            || async move {
                let (status, body) = self.readyz(which).await;
                (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A pool straight to `which`'s database (never through a test's proxy).
    pub fn db(&self, which: Which) -> &PgPool {
        let pools = self.pools.get_or_init(|| {
            let direct = self.direct_settings();
            [Which::Checkout, Which::Cart, Which::Inventory]
                .into_iter()
                .map(|w| kit::db::pool(&direct.database_url(w), 4).expect("a pool"))
                .collect()
        });
        &pools[slot(which)]
    }

    /// Stops everything (gracefully where it runs in this process), then removes the
    /// databases, queues and exchange.
    pub async fn finish(mut self) {
        for which in [Which::Checkout, Which::Cart, Which::Inventory] {
            match self.instances[slot(which)].take() {
                Some(Instance::InProcess(running)) => running.shutdown().await,
                Some(Instance::Process(mut process)) => {
                    let _ = process.child.kill().await;
                }
                None => {}
            }
        }
        if let Some(pools) = self.pools.take() {
            for pool in pools {
                pool.close().await;
            }
        }
        let result = remove_everything(&self.direct_settings()).await;
        self.removed = true;
        if let Err(e) = result {
            panic!("shop {} was not removed: {e:#}", self.id);
        }
    }
}

impl Drop for FaultShop {
    /// Best effort when a test panicked before `finish`: child processes are SIGKILLed
    /// (`kill_on_drop`), services in this process are shut down on the test's runtime, then
    /// the databases and queues are removed from a thread of its own (bounded in time).
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let running: Vec<Running> = self
            .instances
            .iter_mut()
            .filter_map(|i| match i.take() {
                Some(Instance::InProcess(r)) => Some(r),
                _ => None,
            })
            .collect();
        let stopped = match tokio::runtime::Handle::try_current() {
            Ok(handle)
                if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread =>
            {
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                handle.spawn(async move {
                    for r in running {
                        r.shutdown().await;
                    }
                    let _ = tx.send(());
                });
                Some(rx)
            }
            _ => None,
        };
        let settings = self.direct_settings();
        let id = self.id.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Some(stopped) = stopped {
                let _ = stopped.recv_timeout(Duration::from_secs(15));
            }
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => match rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), remove_everything(&settings))
                        .await
                }) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("cleanup of shop {id} failed: {e:#}"),
                    Err(_) => eprintln!("cleanup of shop {id} timed out"),
                },
                Err(e) => eprintln!("cleanup of shop {id}: no runtime: {e}"),
            }
            let _ = done_tx.send(());
        });
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    }
}
