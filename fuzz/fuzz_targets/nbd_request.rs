//! The NBD request and option parsers on arbitrary bytes: they must never panic.
#![no_main]

use hypernix_storage::nbd::proto::{
    REQUEST_LEN, Request, parse_info_request, parse_meta_request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(header) = data.first_chunk::<REQUEST_LEN>() {
        let _ = Request::parse(header);
    }
    let _ = parse_info_request(data);
    let _ = parse_meta_request(data);
});
