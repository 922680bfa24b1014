//! ecs-tunnels: expose private ECS services through Cloudflare Tunnel behind Cloudflare
//! Access, by tagging the service.
//!
//! Every door (Lambda events, CLI) ends in the same reconcile for one service:
//! [`spec`] (tags → desired spec) → [`observe`] (what exists) → [`diff`] (pure plan) →
//! [`apply`] (safe order, bounded concurrency). [`ownership`] decides what is ours.

pub mod apply;
pub mod aws;
pub mod cause;
pub mod cli;
pub mod cloudflare;
pub mod config;
pub mod context;
pub mod desired;
pub mod diagnose;
pub mod diff;
pub mod digest;
pub mod doors;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod normalise;
pub mod observe;
pub mod organization;
pub mod ownership;
pub mod publish;
pub mod reconcile;
pub mod rotate;
pub mod secret;
pub mod secrets_rotation;
pub mod spec;
pub mod status;
pub mod sweep;
pub mod task_definition;
pub mod token;
