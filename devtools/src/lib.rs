pub mod cloudflare_sim;
pub mod function;
pub mod moto;
pub mod runtime_api;
pub mod seed;
