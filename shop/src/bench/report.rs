//! What the scenarios measured, the targets of issue #5 judged on it, and how both are shown:
//! a table for people, one JSON object for machines.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::machine::Machine;
use super::{Scenario, Sizes};

/// One figure: a stable key (JSON), a label and its value as shown (table).
#[derive(Debug, Clone)]
pub struct Metric {
    pub key: String,
    pub label: String,
    pub value: Value,
    pub shown: String,
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(v: f64) -> String {
    let rounded = v.round();
    let digits = format!("{}", rounded.abs() as u128);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Metric {
    fn new(key: &str, label: impl Into<String>, value: Value, shown: String) -> Metric {
        Metric {
            key: key.to_string(),
            label: label.into(),
            value,
            shown,
        }
    }
    pub fn count(key: &str, label: impl Into<String>, n: u64) -> Metric {
        Metric::new(key, label, json!(n), thousands(n as f64))
    }
    /// A rate: `unit` is what is counted per second ("msgs/s").
    pub fn rate(key: &str, label: impl Into<String>, v: f64, unit: &str) -> Metric {
        let shown = if v < 100.0 {
            format!("{v:.1} {unit}")
        } else {
            format!("{} {unit}", thousands(v))
        };
        Metric::new(key, label, json!(round(v, 1)), shown)
    }
    /// A duration in milliseconds (key should end in `_ms`).
    pub fn ms(key: &str, label: impl Into<String>, d: Duration) -> Metric {
        let v = ms(d);
        let shown = if v < 10.0 {
            format!("{v:.2} ms")
        } else {
            format!("{v:.1} ms")
        };
        Metric::new(key, label, json!(round(v, 3)), shown)
    }
    /// A duration in seconds (key should end in `_secs`).
    pub fn secs(key: &str, label: impl Into<String>, d: Duration) -> Metric {
        let v = d.as_secs_f64();
        Metric::new(key, label, json!(round(v, 3)), format!("{v:.1} s"))
    }
    /// Memory given in KiB, shown and stored in MiB (key should end in `_mib`).
    pub fn mib(key: &str, label: impl Into<String>, kib: u64) -> Metric {
        let v = kib as f64 / 1024.0;
        Metric::new(key, label, json!(round(v, 1)), format!("{v:.1} MiB"))
    }
    /// A percentage (key should end in `_pct`).
    pub fn pct(key: &str, label: impl Into<String>, v: f64) -> Metric {
        Metric::new(key, label, json!(round(v, 1)), format!("{v:.0} %"))
    }
    pub fn bytes(key: &str, label: impl Into<String>, n: usize) -> Metric {
        Metric::new(key, label, json!(n), format!("{} B", thousands(n as f64)))
    }
    pub fn text(key: &str, label: impl Into<String>, s: impl Into<String>) -> Metric {
        let s = s.into();
        Metric::new(key, label, json!(s), s)
    }
}

/// A scenario's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub metrics: Vec<Metric>,
    /// Correctness, not speed: every event applied once, conservation…
    pub checks: Vec<(String, bool)>,
    /// Peak RSS (KiB) of each service process, for the memory target.
    pub peak_rss: Vec<(String, u64)>,
    /// Whether the consumer's RSS stayed flat while it drained the backlog, and why.
    pub flat: Option<(bool, String)>,
    pub error: Option<String>,
    pub cleanup_error: Option<String>,
    pub wall: Duration,
}

impl Outcome {
    pub fn new(scenario: Scenario) -> Outcome {
        Outcome {
            scenario,
            metrics: Vec::new(),
            checks: Vec::new(),
            peak_rss: Vec::new(),
            flat: None,
            error: None,
            cleanup_error: None,
            wall: Duration::ZERO,
        }
    }

    pub fn failed(scenario: Scenario, error: String) -> Outcome {
        Outcome {
            error: Some(error),
            ..Outcome::new(scenario)
        }
    }

    pub fn push(&mut self, m: Metric) {
        self.metrics.push(m);
    }

    pub fn check(&mut self, what: impl Into<String>, ok: bool) {
        self.checks.push((what.into(), ok));
    }

    pub fn value(&self, key: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.key == key)
            .and_then(|m| m.value.as_f64())
    }

    pub fn ok(&self) -> bool {
        self.error.is_none() && self.cleanup_error.is_none() && self.checks.iter().all(|c| c.1)
    }

    /// What the progress output says when the scenario is done.
    pub fn one_line(&self) -> String {
        let name = self.scenario.name();
        let secs = self.wall.as_secs_f64();
        match (&self.error, &self.cleanup_error) {
            (Some(e), _) => format!("{name}: FAILED after {secs:.1}s: {e}"),
            (None, Some(e)) => format!("{name}: done in {secs:.1}s, but not cleaned up: {e}"),
            (None, None) => {
                let failed = self.checks.iter().filter(|c| !c.1).count();
                if failed > 0 {
                    format!("{name}: done in {secs:.1}s, {failed} check(s) FAILED")
                } else {
                    format!("{name}: done in {secs:.1}s")
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Met,
    NotMet,
    NotRun,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::NotMet => "not met",
            Status::NotRun => "not run",
        }
    }
    fn of(ok: bool) -> Status {
        if ok { Status::Met } else { Status::NotMet }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    pub status: Status,
    pub value: Value,
    pub detail: String,
}

pub struct Report {
    run_id: String,
    machine: Machine,
    sizes: Sizes,
    outcomes: Vec<Outcome>,
    targets: Vec<Target>,
}

/// The memory target of issue #5, per service process.
pub const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// The lag target of issue #5 at half the maximum sustained rate.
pub const LAG_P99_LIMIT_MS: f64 = 50.0;
/// The library's share of the slower ceiling, issue #5.
pub const BUS_RATIO_TARGET_PCT: f64 = 60.0;

impl Report {
    pub fn new(run_id: String, machine: Machine, sizes: Sizes) -> Report {
        Report {
            run_id,
            machine,
            sizes,
            outcomes: Vec::new(),
            targets: Vec::new(),
        }
    }

    pub fn push(&mut self, o: Outcome) {
        self.outcomes.push(o);
    }

    /// The run's id: its namespaces are `bench_<run>_*` and `bench.<run>.*`.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn find(&self, s: Scenario) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|o| o.scenario == s && o.error.is_none())
    }

    fn value(&self, s: Scenario, key: &str) -> Option<f64> {
        self.find(s)?.value(key)
    }

    /// Figures that need several scenarios, and the targets.
    pub fn derive(&mut self) {
        self.targets.clear();

        // bus >= 60 % of min(ceiling-broker, ceiling-db)
        let bus = self.value(Scenario::Bus, "events_per_sec");
        let broker = self.value(Scenario::CeilingBroker, "msgs_per_sec");
        let db = self.value(Scenario::CeilingDb, "tx_per_sec");
        let name = "bus >= 60 % of min(ceiling-broker, ceiling-db)";
        self.targets.push(match (bus, broker, db) {
            (Some(bus), Some(broker), Some(db)) => {
                let (ceiling, which) = if broker <= db {
                    (broker, "ceiling-broker")
                } else {
                    (db, "ceiling-db")
                };
                let pct = 100.0 * bus / ceiling;
                if let Some(o) = self
                    .outcomes
                    .iter_mut()
                    .find(|o| o.scenario == Scenario::Bus)
                {
                    o.push(Metric::pct(
                        "ratio_to_ceiling_pct",
                        format!("ratio to min(ceilings) = {which}"),
                        pct,
                    ));
                }
                Target {
                    name,
                    status: Status::of(pct >= BUS_RATIO_TARGET_PCT),
                    value: json!(round(pct, 1)),
                    detail: format!(
                        "{pct:.0} % ({} events/s vs {which} {}/s)",
                        thousands(bus),
                        thousands(ceiling)
                    ),
                }
            }
            _ => not_run(name, "needs bus, ceiling-broker and ceiling-db in one run"),
        });

        // checkout: p99 background lag < 50 ms at half the maximum sustained rate
        let name = "checkout: p99 background lag < 50 ms at half the max sustained rate";
        self.targets
            .push(match self.value(Scenario::Checkout, "half_lag_p99_ms") {
                // At a rate of the user's choosing the target's condition was not tested.
                Some(_) if self.sizes.open_loop_rate.is_some() => not_run(
                    name,
                    "--open-loop-rate replaced half the sustained rate; see the open-loop rows",
                ),
                Some(p99) => Target {
                    name,
                    status: Status::of(p99 < LAG_P99_LIMIT_MS),
                    value: json!(p99),
                    detail: format!(
                        "p99 {p99:.1} ms at {} checkouts/s",
                        thousands(
                            self.value(Scenario::Checkout, "half_rate_per_sec")
                                .unwrap_or(0.0)
                        )
                    ),
                },
                None => not_run(name, "needs checkout"),
            });

        // peak RSS < 64 MiB per service
        let name = "peak RSS < 64 MiB per service";
        let peaks: Vec<(String, u64)> = self
            .outcomes
            .iter()
            .flat_map(|o| {
                o.peak_rss
                    .iter()
                    .map(|(svc, kib)| (format!("{svc} in {}", o.scenario.name()), *kib))
            })
            .collect();
        self.targets
            .push(match peaks.iter().max_by_key(|(_, kib)| *kib) {
                Some((who, max)) => Target {
                    name,
                    status: Status::of(peaks.iter().all(|(_, kib)| *kib < RSS_LIMIT_KIB)),
                    value: json!(round(*max as f64 / 1024.0, 1)),
                    detail: format!(
                        "highest {:.1} MiB ({who}); {}",
                        *max as f64 / 1024.0,
                        peaks
                            .iter()
                            .map(|(w, k)| format!("{w} {:.0} MiB", *k as f64 / 1024.0))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                None => not_run(name, "needs checkout or backlog"),
            });

        // flat during the backlog drain
        let name = "backlog: consumer RSS flat during the drain";
        self.targets.push(
            match self.find(Scenario::Backlog).and_then(|o| o.flat.clone()) {
                Some((ok, detail)) => Target {
                    name,
                    status: Status::of(ok),
                    value: json!(ok),
                    detail,
                },
                None => not_run(name, "needs backlog"),
            },
        );
    }

    pub fn ok(&self) -> bool {
        self.outcomes.iter().all(Outcome::ok)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\n== shop bench {} ({} build; {} cores, {}; RabbitMQ {}, PostgreSQL {}; {}) ==",
            self.run_id,
            m.build,
            m.cores,
            m.cpu_model,
            m.rabbitmq_version,
            m.postgresql_version,
            m.date
        );
        let width = self
            .outcomes
            .iter()
            .flat_map(|o| o.metrics.iter().map(|m| m.label.chars().count()))
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(out, "{:<15} {:<width$}  value", "scenario", "metric");
        let _ = writeln!(out, "{:-<15} {:-<width$}  {:-<16}", "", "", "");
        for o in &self.outcomes {
            let mut first = true;
            let mut name = || {
                if std::mem::take(&mut first) {
                    o.scenario.name()
                } else {
                    ""
                }
            };
            for metric in &o.metrics {
                let _ = writeln!(
                    out,
                    "{:<15} {:<width$}  {}",
                    name(),
                    metric.label,
                    metric.shown
                );
            }
            if let Some(e) = &o.error {
                let _ = writeln!(out, "{:<15} FAILED: {e}", name());
            }
            if let Some(e) = &o.cleanup_error {
                let _ = writeln!(out, "{:<15} NOT CLEANED UP: {e}", name());
            }
            let _ = writeln!(
                out,
                "{:<15} {:<width$}  {:.1} s",
                name(),
                "wall time (setup and cleanup included)",
                o.wall.as_secs_f64()
            );
        }
        let checks: Vec<_> = self
            .outcomes
            .iter()
            .flat_map(|o| o.checks.iter().map(move |c| (o.scenario, c)))
            .collect();
        if !checks.is_empty() {
            let _ = writeln!(out, "\nchecks");
            for (s, (what, ok)) in checks {
                let _ = writeln!(
                    out,
                    "  [{}] {}: {what}",
                    if *ok { " ok " } else { "FAIL" },
                    s.name()
                );
            }
        }
        let _ = writeln!(out, "\ntargets (issue #5)");
        let tw = self.targets.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in &self.targets {
            let _ = writeln!(
                out,
                "  {:<9} {:<tw$}  {}",
                format!("[{}]", t.status.word()),
                t.name,
                t.detail
            );
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let mut scenarios = Map::new();
        for o in &self.outcomes {
            let metrics: Map<String, Value> = o
                .metrics
                .iter()
                .map(|m| (m.key.clone(), m.value.clone()))
                .collect();
            let checks: Vec<Value> = o
                .checks
                .iter()
                .map(|(what, ok)| json!({"check": what, "ok": ok}))
                .collect();
            scenarios.insert(
                o.scenario.name().to_string(),
                json!({
                    "ok": o.ok(),
                    "error": o.error,
                    "cleanup_error": o.cleanup_error,
                    "wall_secs": round(o.wall.as_secs_f64(), 3),
                    "metrics": metrics,
                    "checks": checks,
                }),
            );
        }
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "target": t.name,
                    "status": t.status.word(),
                    "value": t.value,
                    "detail": t.detail,
                })
            })
            .collect();
        json!({
            "run": self.run_id,
            "ok": self.ok(),
            "machine": self.machine,
            "sizes": self.sizes,
            "scenarios": scenarios,
            "targets": targets,
        })
    }
}

fn not_run(name: &'static str, why: &str) -> Target {
    Target {
        name,
        status: Status::NotRun,
        value: Value::Null,
        detail: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-12345.0), "-12,345");
    }
}
