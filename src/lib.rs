//! imgtag: tags images in object-storage buckets and lets an operator audit
//! and fix the tags.
//!
//! - [`contract`]: the metadata JSON, the key mapping, the statuses.
//! - [`storage`]: S3 and local-folder buckets behind one trait.
//! - [`bucket`]: an opened bucket (store, index, rules): what front ends list, select and refresh through.
//! - [`catalog`]: images paired with their metadata; audits.
//! - [`summary`]: what an audit keeps of a document.
//! - [`status`]: the statuses and the rule that decides them (review thresholds).
//! - [`index`]: the persistent bucket index (SQLite) that makes re-opening cheap.
//! - [`inventory`]: S3 Inventory reports as a listing source, past what one listing serves.
//! - [`key_index`]: positions by borrowed key, for tables that own their keys.
//! - [`config`]: the options every front end shares.
//! - [`imaging`]: bounded decoding and model preprocessing.
//! - [`detection`]: the local model and Rekognition behind one trait.
//! - [`headline`], [`taxonomy`]: the headline label and the label taxonomy it uses.
//! - [`pipeline`]: the one tagging function every front end calls.
//! - [`export`]: reviewed labels as a Ground Truth manifest or CSV, for retraining.
//! - [`outcome`]: what happened to an image, printed and counted.
//! - [`bulk`]: the one bulk runner (limit, one job per image, the stop rule).
//! - [`sanitize`]: making untrusted text safe for a terminal.
//! - [`suggest`]: numbered replacements for a weak headline (the review queue).
//! - [`private`]: folders and files only their owner can read (index, thumbnails).
//! - [`tui`]: the operator's terminal UI.
//! - [`watch`]: tagging new images as they arrive, until stopped.
//! - [`lambda`]: S3 event and Batch Operations handling (the automated path).
//! - [`backfill`]: Batch Operations manifests for the existing backlog.

#[cfg(feature = "cli")]
pub mod backfill;
pub mod bucket;
pub mod bulk;
pub mod catalog;
pub mod claim;
#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod demo;
pub mod detection;
pub mod export;
pub mod headline;
pub mod imaging;
#[cfg(feature = "index")]
pub mod index;
pub mod inventory;
pub mod key_index;
pub mod lambda;
pub mod outcome;
pub mod pipeline;
pub mod private;
pub mod sanitize;
pub mod status;
pub mod storage;
pub mod suggest;
pub mod summary;
pub mod taxonomy;
#[cfg(feature = "tui")]
pub mod tui;
#[cfg(feature = "cli")]
pub mod watch;
