//! probe-rows end-to-end test support
pub mod gen;
pub mod gen_cli;
pub mod harness;
pub mod measurements;
pub mod oracle;
pub mod process;
