//! The sync engine: read a page, map it, skip what Salesforce already has,
//! upsert the rest, audit every record, then move the cursor.

mod engine;
pub mod lease;
pub mod queues;
pub mod state;

pub use engine::run;
