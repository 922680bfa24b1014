pub mod aws_proxy;
pub mod cloudflare_sim;
pub mod function;
pub mod iam;
pub mod moto;
pub mod response_sink;
pub mod runtime_api;
pub mod seed;
