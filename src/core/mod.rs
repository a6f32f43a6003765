//! The pure core: no `std::fs`, no `std::process`, no tokio. Everything here
//! is a function over data with the clock passed in, tested without I/O.

pub mod act;
pub mod budget;
pub mod hotplug;
pub mod names;
pub mod plan;
pub mod retry;
pub mod rules;
pub mod settle;
pub mod status;
pub mod text;
pub mod tls;
pub mod trust;
pub mod usb;
