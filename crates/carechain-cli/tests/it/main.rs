//! End-to-end tests of the `carechain` binary: the HTTP submit → commit → proof → offline
//! verify path, bad input, a SIGKILL crash under load, tampering detected by `verify`, and a
//! 4-validator cluster of processes surviving a SIGKILLed validator, the web UI in headless
//! Chromium, and the benchmark programs.

#![allow(clippy::unwrap_used)]

mod bench;
mod claims;
mod claims_fixtures;
mod client;
mod cluster;
mod common;
mod consent;
mod crash;
mod epcis;
mod epcis_fixtures;
mod epcis_repo;
mod fhir;
mod governance;
mod http;
mod network;
mod portal;
mod s3;
mod search;
mod tamper;
