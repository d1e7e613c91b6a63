//! probe-rows end-to-end test support
