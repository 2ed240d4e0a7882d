//! Integration tests: conversions checked by the real qemu-img and qemu-io, malformed
//! inputs, and random bytes against the parsers.

mod kit;
mod malformed;
mod props;
mod qemu;
mod stream;
