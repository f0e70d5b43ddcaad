//! `shop bench` on tiny sizes: the code path runs, produces figures, and leaves nothing behind.
//! No figure is judged here (speed on a shared machine is no test verdict).

use shop::Settings;
use shop::bench::{BenchArgs, Scenario};

#[tokio::test]
async fn bench_measures_and_removes_its_namespace() {
    let args = BenchArgs {
        scenarios: vec![Scenario::CeilingBroker, Scenario::CeilingDb, Scenario::Bus],
        json: true,
        quick: true,
        messages: Some(300),
        checkouts: None,
        clients: 4,
        open_loop_rate: None,
        lines: 3,
        skus: 20,
        backlog: None,
        invoices: None,
        data: None,
        sample_ms: 100,
    };
    let settings = Settings {
        db_pool: 4,
        concurrency: 4,
        ..Settings::default()
    };
    let report = shop::bench::measure(args, settings.clone())
        .await
        .expect("the bench runs");
    let json = report.to_json();
    assert!(report.ok(), "a scenario failed: {json:#}");
    for (scenario, key) in [
        ("ceiling-broker", "msgs_per_sec"),
        ("ceiling-db", "tx_per_sec"),
        ("bus", "events_per_sec"),
        ("bus", "ratio_to_ceiling_pct"),
    ] {
        let v = json["scenarios"][scenario]["metrics"][key].as_f64();
        assert!(
            v.is_some_and(|v| v > 0.0),
            "{scenario} has no {key}: {json:#}"
        );
    }
    let target = &json["targets"][0];
    assert!(
        target["status"] == "met" || target["status"] == "not met",
        "the bus target was not judged: {target}"
    );

    // Nothing left: no database, queue or exchange of the run.
    let run = report.run_id();
    let admin = kit::db::connect_now(
        &shop::settings::with_database(&settings.database_url, "postgres"),
        1,
    )
    .await
    .expect("postgres");
    let left: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1")
            .bind(format!("bench_{run}_"))
            .fetch_all(&admin)
            .await
            .expect("list databases");
    assert!(left.is_empty(), "databases left behind: {left:?}");
    admin.close().await;
    let bus = settings.bus();
    for queue in [
        format!("bench.{run}.ceiling-broker.raw"),
        format!("bench.{run}.bus.consumer"),
        format!("bench.{run}.bus.consumer.dlq"),
    ] {
        let depth = events::admin::queue_depth(&bus, &queue)
            .await
            .expect("the broker answers");
        assert_eq!(depth, None, "queue {queue} left behind");
    }
}
