//! End-to-end tests: each starts a whole shop against the real RabbitMQ and PostgreSQL.
//! One binary, so the crate is built and linked once.

mod bad_input;
mod batches;
mod bench;
mod concurrency;
mod consumer_cancelled;
mod contracts;
mod declined;
mod duplicates;
mod flow;
mod idempotency;
mod isolated;
mod least_privilege;
mod parking;
mod relay_wakeup;
mod relays_share;
mod topology;
