//! Stepline's engine: the Amazon States Language model, validator and pure interpreter, plus
//! the in-process runner and conformance harness used by the `stepline` binary.
//!
//! Pure modules (no IO, no clock, no randomness of their own): [`asl`], [`jsonpath`],
//! [`intrinsics`], [`jsonata`], [`dataflow`], [`timestamp`], [`task_token`], [`history`],
//! [`interp`], [`test_state`]. The rest ([`mock`], [`runner`], [`conformance`], [`cli`])
//! drive the interpreter and may do IO; [`runtime`] is the distributed runtime (coordinators over a
//! `Store` and a `Broker`); [`bench`] measures it on real servers (`stepline bench`).

pub mod api;
pub mod asl;
pub mod bench;
pub mod client;
pub mod conformance;
pub mod console;
pub mod dataflow;
pub mod error;
pub mod history;
pub mod interp;
pub mod intrinsics;
pub mod jsonata;
pub mod jsonpath;
pub mod mock;
pub mod runner;
pub mod runtime;
pub mod server;
pub mod task_token;
pub mod test_state;
pub mod timestamp;
