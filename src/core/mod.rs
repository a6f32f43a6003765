//! The pure core: no `std::fs`, no `std::process`, no tokio. Everything here
//! is a function over data with the clock passed in, tested without I/O.

pub(crate) mod act;
pub(crate) mod budget;
pub(crate) mod fresh;
pub(crate) mod grace;
pub(crate) mod haproxy;
pub(crate) mod hotplug;
pub(crate) mod http;
pub(crate) mod inside;
pub(crate) mod names;
pub(crate) mod plan;
pub(crate) mod replug;
pub(crate) mod retry;
pub mod rules;
pub(crate) mod served;
pub(crate) mod settle;
pub(crate) mod stamp;
pub(crate) mod status;
pub(crate) mod text;
pub mod tls;
pub(crate) mod trust;
pub(crate) mod usb;
pub(crate) mod wait;
