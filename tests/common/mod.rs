pub mod bin;
pub mod faulty_proxy;
pub mod fixtures;
pub mod models;
pub mod s3mem;
pub mod tui;
