pub mod fixtures;
pub mod s3mem;
