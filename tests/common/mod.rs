pub mod s3mem;
