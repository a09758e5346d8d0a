//! The process's exit codes, for every subcommand (DESIGN.md "Command line"). A leaf: it
//! depends on nothing, so `cli`, `once`, `demo` and `main` can all name the codes.

/// Everything is fine; for `once`: every resource was described and none is unhealthy.
pub const OK: u8 = 0;
/// `once`: an issue is open or a profile's status is a failed one.
pub const UNHEALTHY: u8 = 1;
/// `once`: nothing unhealthy was seen, but something could not be told: a call failed, a named
/// cluster or profile does not exist, or a target matched nothing.
pub const UNKNOWN: u8 = 2;
/// Bad usage or an invalid configuration (`EX_USAGE`).
pub const USAGE: u8 = 64;
/// A port could not be bound (`EX_UNAVAILABLE`).
pub const UNAVAILABLE: u8 = 69;
/// The process could not run at all (no async runtime, say), or a task of the daemon panicked
/// or ended unexpectedly (`EX_SOFTWARE`).
pub const FAILURE: u8 = 70;
/// A file or directory cannot be created: `demo`'s temporary directory (`EX_CANTCREAT`).
pub const CANT_CREATE: u8 = 73;
