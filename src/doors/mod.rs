//! Doors: turn an input (a Lambda event, a command line) into "reconcile these
//! services" and an outcome into a response. No Cloudflare or planning logic here.

pub mod custom_resource;
pub mod events;
pub mod follow_up;
pub mod lambda;
pub mod run;
