//! Backups: consistent parallel dumps, manifests, verification, restore and point-in-time
//! recovery from the binlog archive.
pub mod archive;
