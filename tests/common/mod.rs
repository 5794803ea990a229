//! Shared test helpers (`mod common;` in each test file).
#![allow(dead_code)]

pub mod hub_server;

pub mod tensors;
