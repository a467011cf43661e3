//! The front end's logic, free of Yew and the browser.

pub mod api;
mod base64;
pub mod build_log;
pub mod completion;
pub mod draft;
pub mod history;
pub mod json;
pub mod keys;
pub mod markers;
pub mod pcrs;
mod readers;
pub mod releases;
pub mod route;
pub mod templates;
pub mod units;
