//! The front end's logic, free of Yew and the browser.

pub mod api;
pub mod build_log;
pub mod completion;
pub mod draft;
pub mod history;
pub mod keys;
pub mod markers;
pub mod pcrs;
pub mod releases;
pub mod route;
pub mod templates;
pub mod units;
