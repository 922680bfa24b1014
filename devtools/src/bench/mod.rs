//! Pieces shared by the benchmark binaries (`bench-calls`, `bench-sweep`): the sample
//! events, the simulator's request log read back and summarised, the dependency levels
//! of a set of timed requests, the sweep benchmark's world, and Markdown tables.

pub mod events;
pub mod levels;
pub mod peers;
pub mod sim_log;
pub mod sweep;
pub mod table;
