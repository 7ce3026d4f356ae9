//! Stepline's integration tests: one binary, one module per area.
//!
//! * [`golden`]: data-driven end-to-end runs (`tests/golden/*.json`) through the virtual-time
//!   runner with Step Functions Local mock configs.
//! * [`interp`]: the pure interpreter driven input by input (timeouts, heartbeats, stale
//!   inputs, stop, retry timers, replay and snapshots).
//! * [`props`]: property tests that parsers and evaluators never panic.
//! * [`conformance`]: the recorded-AWS corpus must not regress below its baseline.
//! * [`tidy`]: house rules (pure modules do no IO, module docs, code map, no placeholders).

mod conformance;
mod golden;
mod interp;
mod props;
mod tidy;
