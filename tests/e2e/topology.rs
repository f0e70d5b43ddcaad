//! A queue that exists with other arguments: the service refuses to run "up but consuming
//! nothing" and says what differs.

use e2e::{remove_everything, test_settings, unique_id};
use shop::settings::{QueueKind, Which};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_declare_stops_the_service_and_says_what_differs() {
    let id = unique_id();
    let quorum = test_settings(&id);
    let mut classic = quorum.clone();
    classic.queue_type = QueueKind::Classic;
    // Someone provisioned cart's queues as classic queues...
    shop::system::migrate(Which::Cart, &classic)
        .await
        .expect("provisioning as classic");

    // ...and the service is configured for quorum queues.
    let cart = shop::system::start(Which::Cart, &quorum)
        .await
        .expect("the HTTP side starts");
    let error = cart
        .wait_ready(std::time::Duration::from_secs(30))
        .await
        .expect_err("it must not become ready")
        .to_string();
    assert!(error.contains("PRECONDITION_FAILED"), "{error}");
    assert!(
        error.contains("x-queue-type"),
        "the message names the argument that differs: {error}"
    );
    assert!(
        error.contains(&format!("test.{id}.cart")),
        "the message names the queue: {error}"
    );
    // `shop serve` waits on this to exit non-zero.
    let failed = tokio::time::timeout(std::time::Duration::from_secs(5), cart.failed())
        .await
        .expect("failed() resolves");
    assert!(failed.starts_with("cart: "), "{failed}");
    let status = cart.bus_health().status();
    assert!(!status.ready());

    cart.shutdown().await;
    remove_everything(&quorum).await.expect("cleanup");
}
