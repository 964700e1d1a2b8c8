//! Host tests of the engine.

mod support;

mod basics;
mod change;
mod cover;
mod failure;
mod fast;
mod model;
mod trace;
