//! A client that does what the device does: sub-URLs, prefilter, Privacy Pass token, PIR through
//! OHTTP. Used by `sift check` and by end-to-end tests.
