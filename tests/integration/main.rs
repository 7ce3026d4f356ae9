//! Stepline's integration tests: one binary, one module per area.
//!
//! * [`golden`]: data-driven end-to-end runs (`tests/golden/*.json`) through the virtual-time
//!   runner with Step Functions Local mock configs.
//! * [`interp`]: the pure interpreter driven input by input (timeouts, heartbeats, stale
//!   inputs, stop, retry timers, replay and snapshots).
//! * [`props`]: property tests that parsers and evaluators never panic.
//! * [`conformance`]: the recorded-AWS corpus must not regress below its baseline.
//! * [`store_contract`]: one `Store` contract suite run against the memory store (manual
//!   clock) and a real Redis (`STEPLINE_REDIS_URL`, default `redis://127.0.0.1:6379`; fails
//!   loudly, never skips, when Redis is unreachable).
//! * [`broker_contract`]: the `Broker` port's contract, run against `MemoryBroker` and (on a real
//!   RabbitMQ, `STEPLINE_AMQP_URL`) `AmqpBroker`: task get/ack/redelivery, input order and
//!   redelivery after a consumer drop, dead-lettering of malformed input, cancellations.
//! * [`worker_amqp`]: the worker SDK on a real RabbitMQ (`STEPLINE_AMQP_URL`; fails loudly when
//!   unreachable): a `Worker` serves a task from an activity queue, replies `Started` and
//!   `Succeeded` to its `reply_to` in the engine's `InputMessage` envelope, acks it after the
//!   reply, and a `CancelMessage` on the cancellation fanout reaches the running handler.
//! * [`runtime_e2e`]: the runtime end to end — coordinator, store, broker and SDK workers —
//!   embedded and over the real Redis and RabbitMQ (which must be running).
//! * [`aws_clients`]: boto3 and the AWS CLI (`tests/aws/test_api.py`) against `stepline dev`
//!   and against `stepline server` on the real Redis and RabbitMQ, and `aws-sdk-sfn` on the
//!   core path, all signing with SigV4.
//! * [`console`]: the web console — its HTTP surface (assets, CSP, cache headers, cookie
//!   sign-in and the `X-Stepline-Console` CSRF header) and the end-to-end test in real headless
//!   Chromium (`tests/console/e2e.mjs`; Node.js and `/usr/bin/chromium` required, never skipped).
//! * [`test_state`]: the `TestState` API's pure core (each status, inspection data, mocks,
//!   rejected requests).
//! * [`tidy`]: house rules (pure modules do no IO, module docs, code map, no placeholders).

mod aws_clients;
mod broker_contract;
mod conformance;
mod console;
mod golden;
mod interp;
mod props;
mod runtime_e2e;
mod store_contract;
mod test_state;
mod tidy;
mod worker_amqp;
