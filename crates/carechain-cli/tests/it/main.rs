//! End-to-end tests of the `carechain` binary: the HTTP submit → commit → proof → offline
//! verify path, bad input, a SIGKILL crash under load, and tampering detected by `verify`.

#![allow(clippy::unwrap_used)]

mod client;
mod common;
mod crash;
mod fhir;
mod http;
mod s3;
mod search;
mod tamper;
