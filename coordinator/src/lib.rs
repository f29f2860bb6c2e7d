//! fleetsync coordinator: consumes change records and applies them to targets.

pub mod apply;
pub mod datadiff;
pub mod feed;
pub mod gc;
pub mod migrate;
pub mod pitr;
pub mod versions;
